import argparse

from . import NAMES, apply

ap = argparse.ArgumentParser(prog="python -m latent_reasoning.presets",
                             description="Write params.yaml from a paper-scale preset over the defaults.")
ap.add_argument("name", choices=NAMES)
ap.add_argument("--defaults", default="params.yaml", help="the params to start from")
ap.add_argument("--out", default="params.yaml")
args = ap.parse_args()
apply(args.name, args.defaults, args.out)
print(f"wrote {args.out} from the preset {args.name}")
