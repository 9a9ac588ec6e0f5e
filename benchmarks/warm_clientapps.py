"""Warm ClientApp processes (`apfed clientapps`) against Flower's fresh `flwr-clientapp` per message, in pairs.

The `clientapps` comparison of benchmarks/deployment_pairs.py (which says what is measured and how).
Writes benchmarks/results/<date>-warm-clientapps-cpu.{json,md}.
Usage: python benchmarks/warm_clientapps.py [--dataset digits] [--epochs 3] [--k 4] [--passives 2] [--pairs 3]
"""

from deployment_pairs import main

if __name__ == "__main__":
    main("clientapps")
