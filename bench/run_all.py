"""Run every benchmark in one go (`make bench`). Slow: about ten minutes."""

from __future__ import annotations

from bench import (
    auth_overhead,
    bulk_import,
    card_render,
    credential_http,
    credential_verify,
    enrollment,
    http_read,
    nearest,
    planner,
)


def main() -> None:
    print("== nearest units ==")
    nearest.run(20_000, 5)
    print("== enrollments per second ==")
    enrollment.run(10, 16, 3)
    print("== enrollment planner ==")
    planner.run(9)
    print("== person read over HTTP ==")
    http_read.run(100_000, 10, 3, 32)
    print("== authorization + audit, in process ==")
    auth_overhead.run(100_000, 20_000, 5)
    print("== credential: offline verification ==")
    credential_verify.run(2000, 5)
    print("== credential: print batch rendering ==")
    card_render.run(100, 3)
    print("== credential: validation API over HTTP ==")
    credential_http.run(20_000, 500, 10, 3)
    print("== bulk import ==")
    bulk_import.run(1_000_000, 1_000_000, 1, 5_000, 2)


if __name__ == "__main__":
    main()
