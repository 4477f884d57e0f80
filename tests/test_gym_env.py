"""The Gymnasium environment: spaces before any run, seeding, check_env, observations, rewards,
action modes, the agent's link, OFO-relative rewards and several environments in one process."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from g2gsim.gym import ENV_ID, G2GEnv, ObservationConfig, RewardConfig, vector_env
from g2gsim.gym.actions import Actions
from g2gsim.gym.reward import voltage_penalty
from g2gsim.kernel import LinkSpec
from g2gsim.scenarios import load_scenario
from g2gsim.scenarios.model import ScenarioError

HOLD = np.ones(5, dtype=np.int64)


def _env(**kwargs) -> G2GEnv:
    return G2GEnv("ieee13_ofo_notap", horizon_s=kwargs.pop("horizon_s", 20), **kwargs)


def _episode(env: G2GEnv, actions, seed: int = 0) -> tuple[list[np.ndarray], list[float], list[dict]]:
    observations, rewards, infos = [env.reset(seed=seed)[0]], [], []
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        observations.append(observation)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            break
    return observations, rewards, infos


def test_spaces_are_known_before_the_first_reset_and_observations_are_named() -> None:
    env = _env()
    assert env.site == "dc" and env.models == tuple(sorted(env.models))
    assert env.action_space == gymnasium.spaces.MultiDiscrete([3] * 5)
    names = env.observation_names
    assert env.observation_space.shape == (len(names),) == (32 + 3 + 4 * 5 + 1,)
    assert names[0] == "v.633.1" and names[32:35] == ("under", "over", "violation_fraction")
    assert names[35:39] == tuple(f"Llama-3.1-405B.{f}" for f in ("batch", "itl_ratio", "replicas", "batch_change"))
    assert names[-1] == "site_power_mw"
    assert env.scenario is None  # nothing has run yet


@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is:UserWarning")
def test_the_environment_passes_gymnasium_check_env() -> None:
    check_env(_env(horizon_s=8), skip_render_check=True)


def test_an_episode_runs_to_the_horizon_and_its_run_is_the_scenario_without_its_controller() -> None:
    env = _env(horizon_s=12)
    observations, rewards, infos = _episode(env, [HOLD] * 50)
    assert len(rewards) == 11 and [i["time_s"] for i in infos] == [float(t) for t in range(2, 13)]
    assert all(env.observation_space.contains(o) for o in observations)
    assert env.scenario is not None and [c.name for c in env.scenario.controllers] == []  # the OFO is replaced
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(HOLD)
    metrics = env.episode_metrics()
    assert metrics["n_grid_states"] == 120 and env.episode_result().table("dc/state").shape[0] == 120


def test_reset_seeds_make_episodes_reproducible_and_different_seeds_differ() -> None:
    env = _env(horizon_s=6)
    actions = [np.array([0, 2, 1, 0, 2])] * 5
    a = _episode(env, actions, seed=3)
    b = _episode(env, actions, seed=3)
    c = _episode(env, actions, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True)) and a[1] == b[1]
    assert not all(np.array_equal(x, y) for x, y in zip(a[0], c[0], strict=True))
    fixed = _env(horizon_s=6, vary_seed=False)
    assert np.array_equal(_episode(fixed, actions, seed=3)[0][-1], _episode(fixed, actions, seed=4)[0][-1])


def test_delta_actions_move_one_feasible_size_and_stop_at_the_ends() -> None:
    env = _env(horizon_s=12)
    env.reset(seed=0)
    assert env.batches == dict.fromkeys(env.models, 128)
    env.step(np.array([0, 2, 1, 1, 1]))
    assert list(env.batches.values()) == [64, 256, 128, 128, 128]
    for _ in range(5):
        observation, *_ = env.step(np.array([2, 2, 0, 1, 1]))
    assert list(env.batches.values()) == [512, 512, 8, 128, 128]
    names = env.observation_names
    assert observation[names.index("Llama-3.1-405B.batch")] == pytest.approx(1.0)
    assert observation[names.index("Llama-3.1-8B.batch")] == pytest.approx(0.0)
    commands = env.run.commands()
    assert {c.source for c in commands} == {"agent"} and all(c.target == "dc" for c in commands)


def test_coupled_actions_shift_every_model_together() -> None:
    actions = Actions("coupled", [(8, 16, 32, 64, 128, 256, 512), (16, 32, 64, 128)])
    assert actions.space == gymnasium.spaces.Discrete(7)
    levels = actions.levels_of([128, 64])
    assert actions.batches(actions.decode(6, levels)) == [512, 128]  # +3, clipped at the top
    assert actions.batches(actions.decode(0, levels)) == [16, 16]  # -3, clipped at the bottom
    assert actions.batches(actions.decode(3, levels)) == [128, 64]
    env = _env(horizon_s=5, action_mode="coupled")
    env.reset(seed=0)
    env.step(5)  # K = 6: a shift of -1
    assert set(env.batches.values()) == {64}
    with pytest.raises(ValueError, match='"delta" or "coupled"'):
        Actions("absolute", [(8, 16)])


def test_the_reward_terms_follow_their_definitions() -> None:
    env = _env(horizon_s=5, reward={"w_in_band": 0.5, "switch_mode": "binary", "w_switch": 2.0, "w_throughput": 0.0})
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([0, 0, 1, 1, 1]))
    terms = info["reward_terms"]
    assert terms["switch"] == -4.0 and terms["throughput"] == 0.0
    assert reward == pytest.approx(sum(terms.values()))
    voltages = np.asarray(env.run.mailbox("grid").value.voltages)
    assert terms["voltage"] == pytest.approx(-1000.0 * voltage_penalty(voltages, 0.95, 1.05))
    inside = np.mean((voltages >= 0.95) & (voltages <= 1.05))
    assert terms["in_band"] == pytest.approx(0.5 * inside)
    assert info["voltage"]["violation_fraction"] == pytest.approx(1 - inside)
    clipped = _env(horizon_s=5, reward={"clip": 0.01, "w_switch": 100.0})
    clipped.reset(seed=0)
    assert clipped.step(np.array([0, 0, 0, 0, 0]))[1] == -0.01


def test_cooldown_switching_costs_more_right_after_a_change() -> None:
    env = _env(horizon_s=8, reward={"switch_mode": "cooldown", "w_switch": 1.0, "cooldown_steps": 2.0})
    env.reset(seed=0)
    costs = []
    for action in ([0, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1] * 5, [1] * 5, [2, 1, 1, 1, 1]):
        costs.append(env.step(np.array(action))[4]["reward_terms"]["switch"])
    assert costs[0] == 0.0  # the first change of a model is free
    assert costs[1] == pytest.approx(-np.exp(-0 / 2.0))
    assert costs[4] == pytest.approx(-np.exp(-2 / 2.0))


def test_observation_options_change_the_layout() -> None:
    zoned = _env(
        observation={"voltages": "bus_minmax", "summary": "zones", "zones": {"near": ["671", "692"]}, "time": True}
    )
    names = zoned.observation_names
    assert names[:2] == ("v.633.min", "v.633.max") and "near.under" in names and names[-1] == "time"
    observation, _ = zoned.reset(seed=0)
    assert observation[-1] == 0.0 and observation.shape == zoned.observation_space.shape
    only = _env(observation={"voltage_buses": ["671"], "models": False})
    assert only.observation_names == ("v.671.1", "v.671.2", "v.671.3", "under", "over", "violation_fraction")
    with pytest.raises(ValueError, match="zones"):
        ObservationConfig(summary="zones")


def test_the_agent_link_delays_its_commands() -> None:
    env = _env(horizon_s=6, command_link=LinkSpec(delay_s="0.5"))
    env.reset(seed=0)
    env.step(np.array([0, 1, 1, 1, 1]))
    env.step(HOLD)
    [command] = env.run.commands()
    assert (command.sent_s, command.deliver_s) == (1.0, 1.5)
    state = env.run.mailbox("dc").value
    assert state.batch_of("Llama-3.1-405B") == 64


def test_a_reward_relative_to_ofo_subtracts_the_ofo_runs_penalty_at_the_same_instant() -> None:
    scenario = load_scenario("ieee13_ofo_notap").with_overrides(**{"sites.0.models.0.replicas": 130, "horizon_s": 10})
    plain = G2GEnv(scenario, vary_seed=False, reward={"w_throughput": 0, "w_latency": 0, "w_switch": 0})
    relative = G2GEnv(
        scenario, vary_seed=False, reward={"w_throughput": 0, "w_latency": 0, "w_switch": 0, "relative_to_ofo": True}
    )
    _, plain_rewards, _ = _episode(plain, [HOLD] * 20)
    _, relative_rewards, _ = _episode(relative, [HOLD] * 20)
    ofo = relative._ofo
    assert ofo is not None and len(ofo) == 10
    expected = [p + 1000.0 * ofo[k + 1] for k, p in enumerate(plain_rewards)]
    assert relative_rewards == pytest.approx(expected)


def test_several_environments_run_in_one_process_as_a_vector_env() -> None:
    vec = vector_env(2, scenario="ieee13_ofo_notap", horizon_s=5)
    observations, _ = vec.reset(seed=[1, 1])
    assert observations.shape == (2, 56) and np.array_equal(observations[0], observations[1])
    for _ in range(3):
        observations, _, _, _, _ = vec.step(np.array([[0, 1, 2, 1, 1], [2, 2, 2, 2, 2]]))
    assert not np.array_equal(observations[0], observations[1])
    single = _env(horizon_s=5)
    expected = _episode(single, [np.array([0, 1, 2, 1, 1])] * 3, seed=1)[0][-1]
    assert np.array_equal(observations[0], expected)  # neighbours do not disturb each other
    vec.close()


def test_the_environment_is_registered_with_gymnasium() -> None:
    env = gymnasium.make(ENV_ID, scenario="ieee13_ofo_notap", horizon_s=4)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (56,)
    env.close()
    vec = gymnasium.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", scenario="ieee13_ofo_notap", horizon_s=4)
    assert vec.reset(seed=0)[0].shape == (2, 56)
    vec.close()


def test_errors_name_what_is_wrong() -> None:
    with pytest.raises(ScenarioError, match="4 sites"):
        G2GEnv("ieee123_ofo_tapchange", horizon_s=5)
    with pytest.raises(ScenarioError, match="no site 'dc2'"):
        _env(site="dc2")
    with pytest.raises(ValueError, match="longer than control_period_s"):
        _env(horizon_s=1)
    with pytest.raises(TypeError, match="RewardConfig"):
        _env(reward=3)
    env = _env(horizon_s=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="one entry per model"):
        env.step(np.array([1, 1]))
    assert RewardConfig(v_min=0.9).v_min == 0.9
