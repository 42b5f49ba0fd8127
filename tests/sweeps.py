"""Synthetic sweeps with known answers, shared by the tests of the fits, figures and forecast."""

import numpy as np
import xarray as xr

# Chinchilla's fitted constants (Hoffmann et al. 2022): L(N, D) = E + A/N**alpha + B/D**beta.
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
BUDGETS = (1e15, 2e15, 5e15, 1e16, 2e16, 5e16, 1e17, 2e17, 5e17, 1e18)
PARAM_GRID = np.unique(np.round(10 ** np.arange(3.0, 11.0, 0.125)).astype(np.int64))


def chinchilla_n_opt(budget, E, A, B, alpha, beta):
    """Analytic minimiser of L(N, C/(6N)) over N: G * (C/6)**(beta/(alpha+beta))."""
    return (alpha * A / (beta * B)) ** (1 / (alpha + beta)) * (budget / 6) ** (beta / (alpha + beta))


def chinchilla_loss(params, samples, E, A, B, alpha, beta):
    return E + A / params**alpha + B / samples**beta


def synthetic_results(games=("Synth",), budgets=BUDGETS, *, sizes_per_budget=9, offset_dex=0.0,
                      noise=0.0, seeds=2, return_scale=100.0, return_exponent=2.0, return_offset=0.0,
                      expert_return=150.0, loss_fn=None, n_opt_fn=None, rng_seed=0) -> xr.Dataset:
    """A results Dataset as `gather_results` writes it (dims game, flops, params, seed).

    Each budget runs `sizes_per_budget` consecutive sizes of a shared grid, centred on the
    analytic optimum shifted by `offset_dex` decades (so combinations not run stay NaN).
    Loss is `loss_fn(params, samples)` (Chinchilla by default) times log-normal noise;
    return = return_scale * (1/loss)**return_exponent + return_offset.
    """
    rng = np.random.default_rng(rng_seed)
    loss_fn = loss_fn or (lambda n, d: chinchilla_loss(n, d, **CHINCHILLA))
    n_opt_fn = n_opt_fn or (lambda c: chinchilla_n_opt(c, **CHINCHILLA))
    shape = (len(games), len(budgets), len(PARAM_GRID), seeds)
    loss, samples = np.full(shape, np.nan), np.full(shape, np.nan)
    for j, budget in enumerate(budgets):
        centre = int(np.argmin(np.abs(np.log10(PARAM_GRID) - np.log10(n_opt_fn(budget)) - offset_dex)))
        run = slice(centre - sizes_per_budget // 2, centre - sizes_per_budget // 2 + sizes_per_budget)
        params = PARAM_GRID[run].astype(float)
        for i in range(len(games)):
            for s in range(seeds):
                samples[i, j, run, s] = budget / (6 * params)
                loss[i, j, run, s] = loss_fn(params, budget / (6 * params)) * np.exp(
                    noise * rng.standard_normal(len(params)))
    returns = return_scale * (1 / loss) ** return_exponent + return_offset
    return xr.Dataset(
        {"loss": (("game", "flops", "params", "seed"), loss),
         "return": (("game", "flops", "params", "seed"), returns),
         "return_sem": (("game", "flops", "params", "seed"), 0.05 * np.abs(returns)),
         "samples": (("game", "flops", "params", "seed"), samples),
         "epochs": (("game", "flops", "params", "seed"), samples / 1e6),
         "expert_return": (("game",), np.full(len(games), expert_return))},
        coords={"game": list(games), "flops": np.asarray(budgets, float), "params": PARAM_GRID,
                "seed": np.arange(seeds)},
    )


def pure_law_results(noise=0.0, seeds=2, rng_seed=0, **kwargs) -> xr.Dataset:
    """Profiles exactly parabolic in log-log space around N_opt = 0.3 C**0.6, L_min = 20 C**-0.05."""
    def n_opt(budget):
        return 0.3 * budget**0.6

    def loss(params, samples):
        budget = 6 * params * samples
        return 20 * budget**-0.05 * 10 ** (0.3 * (np.log10(params) - np.log10(n_opt(budget))) ** 2)

    return synthetic_results(loss_fn=loss, n_opt_fn=n_opt, noise=noise, seeds=seeds, rng_seed=rng_seed, **kwargs)


def law(fits, quantity, stat, game="Synth"):
    return float(fits["law"].sel(game=game, quantity=quantity, stat=stat))


def law_of(fits, method, quantity, stat, fit_set="all", game="Synth"):
    return float(fits["laws"].sel({"game": game, "method": method, "fit_set": fit_set, "quantity": quantity,
                                   "stat": stat}))


ENTROPY = 1.5  # a sampling expert's entropy: the cross entropy's floor, which the KL does not carry


def with_kl(results: xr.Dataset, games=None) -> xr.Dataset:
    """`kl` = the loss above an entropy floor for `games` (default: all), NaN for the rest (no expert
    distribution); `loss` (the cross entropy) = that KL + the floor, as for a sampling expert."""
    games = list(results["game"].values) if games is None else games
    kl = results["loss"].copy()
    results = results.assign(loss=results["loss"] + ENTROPY)
    has_kl = xr.DataArray([g in games for g in results["game"].values], dims="game", coords={"game": results["game"]})
    return results.assign(kl=kl.where(has_kl))
