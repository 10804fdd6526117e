"""TD3+BC (Fujimoto & Gu, 2021) with the paper's defaults."""

from __future__ import annotations

import copy

import torch

from spar_rectify.algos.common import ActorExport, Batch, DataInfo, adam, soft_update
from spar_rectify.config import TD3BCSettings, TrainConfig
from spar_rectify.losses import q_regression_loss, td3bc_actor_loss
from spar_rectify.networks import EnsembleMLP, mlp


class TD3BC(ActorExport):
    """Twin critic with target policy smoothing; actor maximises lambda * Q minus a BC term."""

    settings = (TD3BCSettings,)

    def __init__(self, info: DataInfo, config: TrainConfig, generator: torch.Generator):
        obs_dim, act_dim = info.obs_dim, info.act_dim
        self.config, self.generator = config, generator
        self.actor = mlp(obs_dim, act_dim, config.hidden)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = EnsembleMLP(2, obs_dim + act_dim, 1, config.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), config.lr)
        self.critic_opt = adam(self.critic.parameters(), config.lr)

    def modules(self) -> dict:
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }

    def optimizers(self) -> dict:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def update(self, b: Batch, step: int) -> dict:
        cfg = self.config
        with torch.no_grad():
            noise = torch.randn(b.action.shape, generator=self.generator) * cfg.policy_noise
            next_action = torch.tanh(self.actor_target(b.next_obs)) + noise.clamp(-cfg.noise_clip, cfg.noise_clip)
            next_q = self.critic_target(torch.cat([b.next_obs, next_action.clamp(-1.0, 1.0)], -1)).min(0).values
            target = b.reward + cfg.gamma * b.not_done * next_q.squeeze(-1)
        q = self.critic(torch.cat([b.obs, b.action], -1)).squeeze(-1)
        critic_loss = q_regression_loss(q, target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}
        if step % cfg.policy_freq == 0:
            pi = torch.tanh(self.actor(b.obs))
            q_pi = self.critic(torch.cat([b.obs, pi], -1))[0].squeeze(-1)
            actor_loss = td3bc_actor_loss(q_pi, pi, b.action, cfg.td3bc_alpha)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            soft_update(self.critic_target, self.critic, cfg.tau)
            soft_update(self.actor_target, self.actor, cfg.tau)
            metrics["actor_loss"] = actor_loss.detach()
        return metrics
