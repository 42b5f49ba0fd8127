import numpy as np
import pytest

from ilscaling.data.atari import Demonstrations


def synthetic_demonstrations(num_episodes=6, length=40, num_actions=4, seed=0) -> Demonstrations:
    """Small random episodes (frames, actions, rewards) with distinct lengths; the expert's
    distributions are random (all actions possible), drawn after the rest so that the frames,
    actions and rewards stay those of earlier versions of this fixture."""
    rng = np.random.default_rng(seed)
    lengths = [length + 3 * i for i in range(num_episodes)]
    frames = [rng.integers(0, 256, (n, 84, 84), dtype=np.uint8) for n in lengths]
    actions = [rng.integers(0, num_actions, n).astype(np.uint8) for n in lengths]
    rewards = [rng.normal(size=n).astype(np.float32) for n in lengths]
    policies = [rng.dirichlet(np.ones(num_actions), n).astype(np.float32) for n in lengths]
    return Demonstrations.from_episodes(frames, actions, rewards, list(range(num_episodes)), policies)


@pytest.fixture
def demos():
    return synthetic_demonstrations()


@pytest.fixture(scope="session")
def recordings(tmp_path_factory):
    """recordings(kind): four short games of the workflow's NetHack bot in environment `kind`
    (seeded or challenge), indexed into an NLD database (real nle.dataset); recorded once."""
    from ilscaling.data.nethack import build_database
    from ilscaling.games.nethack_bot import record_bot_games

    made = {}

    def recording(kind):
        if kind not in made:
            root = tmp_path_factory.mktemp(f"nethack-{kind}")
            card = record_bot_games(root / "ttyrecs", games=4, processes=2, max_episode_steps=300, seed=0,
                                    env_kind=kind, log=lambda *_: None)
            db = root / "nld.db"
            assert build_database(root / "ttyrecs", db, "bot") == 4 == card["games"]
            made[kind] = root, db, card
        return made[kind]

    return recording


@pytest.fixture(scope="session")
def recorded(recordings):
    """The seeded recording (the default environment)."""
    return recordings("seeded")
