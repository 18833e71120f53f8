"""python -m postergenre.serve --model FILE [--port 8000]: a local page where anyone can try a poster.

The model is loaded once at start; the page, /predict and their limits are serve/server.py's.
"""
import argparse
import socket

from postergenre.core import cli
from postergenre.core.errors import DataError
from postergenre.modelfiles.titles import titles_path
from postergenre.predict.arguments import add_model_arguments, chosen_model, load_predictor
from postergenre.predict.titles import with_title_head
from postergenre.serve.server import make_server


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.serve", __doc__)
    add_model_arguments(parser)  # a network gives heatmaps too; a head, probabilities only
    parser.add_argument("--port", type=int, default=8000, help="local port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0: every interface; the page has no login)")
    parser.add_argument("--max-mb", type=float, default=10.0, help="largest upload accepted")
    parser.add_argument("--weights", default=None, help="local weights of a head's backbone (resnet50 offline)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds a request may take to arrive, its line, headers and body together")
    parser.add_argument("--max-clients", type=int, default=32, help="connections served at once; more get a 503")
    args = parser.parse_args(argv)
    cli.run(lambda: serve(args), interrupted="stopped")


def serve(args: argparse.Namespace) -> None:
    try:  # before the model loads: a busy port is one line at once, not a traceback after the loading
        socket.create_server((args.host, args.port)).close()
    except OSError as e:
        raise DataError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); pass another --port") from None
    path = chosen_model(args)
    predictor = load_predictor(path, args.weights, engine=args.engine, trust_timm=args.trust_timm)
    fused = with_title_head(predictor, path) if titles_path(path).is_file() else None
    server = make_server(predictor, args.port, int(args.max_mb * 1e6), args.timeout, args.max_clients, args.host,
                         fused)
    print(f"serving {predictor.name} on http://{args.host}:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
