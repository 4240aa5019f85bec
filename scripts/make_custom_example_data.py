"""Write data/custom_example/: a small synthetic dataset in a layout the lab's own tasks do
not use, for recipes/custom_task_example.yaml and the README section "Your own task".

- ``shop.csv`` (ID): columns ``qid, item, pack, price, part``: "A pack of {pack} {item}
  costs {price} dollars." -> the price of one; ``part`` is train or test.
- ``market.tsv`` (OOD, another file, other columns and phrasing): ``product, units,
  total_cents``: the price of one in cents, from a bulk order.

Deterministic (seeded); rerun to regenerate byte-identical files:
    python scripts/make_custom_example_data.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "custom_example"
ITEMS = [
    "pens",
    "pencils",
    "erasers",
    "markers",
    "notebooks",
    "stickers",
    "rulers",
    "clips",
    "folders",
    "crayons",
    "batteries",
    "candles",
    "soaps",
    "cups",
    "plates",
    "spoons",
]
PRODUCTS = [
    "apples",
    "oranges",
    "lemons",
    "onions",
    "potatoes",
    "carrots",
    "peaches",
    "limes",
    "pears",
    "plums",
    "melons",
    "mangoes",
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random("custom-example")
    seen, rows = set(), []
    while len(rows) < 240:
        item, pack, unit = rng.choice(ITEMS), rng.randint(2, 9), rng.randint(1, 12)
        if (item, pack, unit) in seen:
            continue
        seen.add((item, pack, unit))
        part = "test" if len(rows) % 6 == 5 else "train"
        rows.append(
            {
                "qid": f"s{len(rows):03d}",
                "item": item,
                "pack": pack,
                "price": pack * unit,
                "part": part,
            }
        )
    with open(OUT / "shop.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    seen, ood = set(), []
    while len(ood) < 60:
        product, units, cents = rng.choice(PRODUCTS), rng.randint(12, 40), rng.randint(15, 95)
        if (product, units, cents) in seen:
            continue
        seen.add((product, units, cents))
        ood.append({"product": product, "units": units, "total_cents": units * cents})
    with open(OUT / "market.tsv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(ood[0]), delimiter="\t")
        w.writeheader()
        w.writerows(ood)


if __name__ == "__main__":
    main()
