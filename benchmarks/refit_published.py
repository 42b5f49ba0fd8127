"""Wall time of re-fitting the whole published Atari set: every game, raw and vertex methods,
the parametric fit with 1,000 bootstrap resamples (and its holdout refit), forecasts.

    python benchmarks/refit_published.py [path]   # default ../shared/published/atari

Prints the machine and the time of ingestion and of the fit (figures excluded: they only read files).
"""

import sys
import time
from pathlib import Path

from ilscaling.published import read_published
from ilscaling.fit import FitConfig, fit_results
from machine import describe


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "published" / "atari"
    print(describe())
    started = time.perf_counter()
    results = read_published(path)
    ingested = time.perf_counter()
    fits = fit_results(results, FitConfig(bootstrap=1000))
    done = time.perf_counter()
    print(f"{path}: {results.sizes['game']} games, {int(results['loss'].count())} loss values")
    print(f"ingest {ingested - started:.1f} s, fit (raw + vertex + parametric, 1000 bootstrap) "
          f"{done - ingested:.1f} s, total {done - started:.1f} s")
    print(f"parametric fits with bootstrap: {int((fits['parametric_info'].sel(pinfo='n_bootstrap') > 0).sum())}")


if __name__ == "__main__":
    main()
