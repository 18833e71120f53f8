"""python -m postergenre.extract --data DIR --split FILE --backbone NAME --out FILE.h5 [--tta] ..."""
from postergenre.core import cli
from postergenre.core.runtime import ENGINES, INFERENCE_PRECISION, PRECISIONS
from postergenre.extract.backbones import backbone_argument, build_backbone
from postergenre.extract.features import extract
from postergenre.posters.data import PosterSet, read_posters
from postergenre.posters.split import Split, load_current


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.extract", __doc__)
    parser.add_argument("--data", required=True, help="data set folder (CSV + images)")
    parser.add_argument("--split", required=True, help="split file from `python -m postergenre.posters split`")
    parser.add_argument("--backbone", default="resnet50", type=backbone_argument,
                        help="resnet50, efficientnet_lite0/1/2(_multiscale), or timm:<any timm model name>")
    parser.add_argument("--weights", default=None, help="local state_dict file, or 'random' (timing only)")
    parser.add_argument("--out", required=True, help="feature file to write (.h5)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 on the CPU, 64 on CUDA")
    parser.add_argument("--tta", action="store_true", help="average embeddings with the flipped poster")
    parser.add_argument("--precision", default=INFERENCE_PRECISION, choices=PRECISIONS,
                        help="autocast precision (fp32 by default: the same features on every CPU)")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="auto: onnxruntime on the CPU in fp32 (several times faster there), torch otherwise")
    parser.add_argument("--workers", type=int, default=None,
                        help="image decoding processes (default: none with 2 cores or fewer, else half the cores, "
                             "at most 4)")
    args = parser.parse_args(argv)
    cli.run(lambda: extract(*_current(args.data, args.split),
                            build_backbone(args.backbone, args.weights), args.out, batch_size=args.batch_size,
                            tta=args.tta, precision=args.precision, workers=args.workers,
                            engine=args.engine),
            interrupted=f"interrupted: finished batches are kept in {args.out}.parts; run the same command to resume")


def _current(data: str, split: str) -> tuple[PosterSet, Split]:
    """The data set and its split, if the split is current with its CSV (else one line saying how to update it)."""
    posters = read_posters(data)
    return posters, load_current(split, posters)


if __name__ == "__main__":
    main()
