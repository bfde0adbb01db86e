"""Command line of the web app: paint a hole on a photo in the browser and compare CoModGAN's completions, one per
seed, with the traditional methods; the same through an HTTP API (the work is in app_lib/, the page in app_lib/static/).

Examples:

    python app.py --network results/demo/training-runs/gan-l1/00000-tiny-.../network-snapshot-000014.pt
    python app.py --network ffhq512.pt --port 8080 --device cpu
    python app.py            # no network: the traditional methods only
"""

import sys

import click

from cli_options import impl_option
from dnnlib import UserError
from dnnlib.cli_types import FiniteFloatRange


@click.command()
@click.option("--network", default=None, metavar="SNAPSHOT|PKL|ONNX",
              help="Snapshot .pt written by train.py, an official co-mod-gan .pkl, or a .onnx file written by "
                   "export.py (run by ONNX Runtime on the CPU). Without it only the traditional methods are offered.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 opens the app to your network (it has no login).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port.")
@click.option("--max-upload-mb", type=FiniteFloatRange(min=0.01), default=25.0, show_default=True,
              help="Largest image or mask file accepted.")
@click.option("--max-side", type=click.IntRange(min=16), default=8192, show_default=True,
              help="Largest image side accepted, in pixels.")
@impl_option
def main(network, device, host, port, max_upload_mb, max_side, impl):
    """Serve the inpainting page and the /api/v1 API (documented at /docs) until Ctrl+C."""
    import uvicorn

    from app_lib.inputs import Limits
    from app_lib.server import create_app
    from app_lib.service import Service
    from torch_utils.misc import resolve_device

    try:
        dev = resolve_device(device)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    limits = Limits(max_bytes=int(max_upload_mb * 1024 * 1024), max_side=max_side)
    service = Service(network, dev, impl=impl, limits=limits)
    if service.network_error:
        click.echo(f"warning: {service.network_error}; serving the traditional methods only", err=True)
    elif service.G is None:
        click.echo("no --network: serving the traditional methods only (make demo, then make app)", err=True)
    else:
        click.echo(f"loaded {network} ({service.G.img_resolution}x{service.G.img_resolution}) on {dev}", err=True)
    click.echo(f"open http://{host if ':' not in host else f'[{host}]'}:{port}/  (API docs at /docs)", err=True)
    uvicorn.run(create_app(service), host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
