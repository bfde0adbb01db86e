"""The web app's HTTP side: the FastAPI routes of the page and of the /api/v1 API, kept thin (read the request,
check it, hand it to the worker, encode the answer), and UserErrors turned into a 4xx with the one-line reason.

Uploads are read into memory under a byte limit (never spooled to disk) and dropped when the request ends; the
page's three files are read once at start-up, so no route ever opens a path that a client names.
"""

import asyncio
import base64
import importlib.resources
import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.formparsers import MultiPartException, MultiPartParser

from app_lib import inputs
from app_lib.service import InpaintRequest
from app_lib.worker import Busy, Worker
from dnnlib import UserError
from inference.fitting import DEFAULT_FIT, FIT_CHOICES
from inference.inpaint import SEED_LIMIT

# The page's files are package data of app_lib (app_lib/static/), found through the package, not through a path.
STATIC_DIR = importlib.resources.files("app_lib") / "static"
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
              "/style.css": ("style.css", "text/css")}
# The page may use only what this server sends (no CDN, no web fonts); images come back as blob: or data: URLs.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
FORM_OVERHEAD = 64 * 1024  # bytes of a multipart body beside its two files
MAX_FIELDS = 16
log = logging.getLogger("comodgan.app")


def _status(err):
    if isinstance(err, inputs.TooLarge):
        return 413
    if isinstance(err, Busy):
        return 503
    return 400


def _one_line(err):
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


async def _capped(stream, limit):
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise inputs.TooLarge(f"request: over the limit of {limit / (1024 * 1024):.1f} MB")
        yield chunk


async def read_form(request, limits):
    """The multipart form of `request` as {name: str or bytes}, read into memory under the byte limits."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UserError("request: send multipart/form-data (fields image, mask, ...)")
    limit = 2 * limits.max_bytes + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise inputs.TooLarge(f"request: {int(declared) / (1024 * 1024):.1f} MB is over the limit of "
                              f"{limit / (1024 * 1024):.1f} MB")
    parser = MultiPartParser(request.headers, _capped(request.stream(), limit), max_files=2, max_fields=MAX_FIELDS)
    parser.spool_max_size = limit  # files stay in memory up to the limit: no upload ever touches the disk
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise UserError(f"request: malformed form ({_one_line(err)})") from None
    fields = {}
    try:
        for key, value in form.multi_items():
            fields[key] = await value.read() if hasattr(value, "read") else value
    finally:
        await form.close()
    return fields


def _form_bytes(fields, name):
    value = fields.get(name)
    if value is None:
        raise UserError(f"{name}: missing (send it as a file field)")
    return value if isinstance(value, bytes) else str(value).encode()


def _form_text(fields, name, default):
    value = fields.get(name, default)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_inpaint_form(fields, service):
    """The checked InpaintRequest of a POST /api/v1/inpaint form (cheap checks only; decoding is the worker's)."""
    method = service.check_method(_form_text(fields, "method", service.methods[0]))  # the GAN when loaded
    seeds = inputs.parse_seed_list(_form_text(fields, "seeds", "0"), service.limits)
    return InpaintRequest(
        image=_form_bytes(fields, "image"), mask=_form_bytes(fields, "mask"), method=method, seeds=tuple(seeds),
        truncation=inputs.parse_float(_form_text(fields, "truncation", "1"), "truncation", 0.0, 2.0),
        dropout=inputs.parse_bool(_form_text(fields, "dropout", "false"), "dropout"),
        noise_mode=inputs.parse_choice(_form_text(fields, "noise_mode", "const"), "noise_mode", inputs.NOISE_MODES),
        fit=inputs.parse_choice(_form_text(fields, "fit", DEFAULT_FIT), "fit", FIT_CHOICES),
    )


def _token(fields):
    token = _form_text(fields, "token", "")
    if token and not inputs.TOKEN_RE.fullmatch(token):
        raise UserError("token: 1-64 letters, digits, '-' or '_'")
    return token or None


def _inpaint_schema(service):
    """The multipart body of POST /api/v1/inpaint for /docs (the route reads the form itself, under limits)."""
    text = {"type": "string"}
    props = {
        "image": {"type": "string", "format": "binary", "description": "The photo (PNG, JPEG, WebP or BMP)."},
        "mask": {"type": "string", "format": "binary", "description": "Mask of the image's size, white = hole."},
        "method": {**text, "enum": service.methods, "default": service.methods[0]},
        "seeds": {**text, "default": "0", "description": f"'0-3', '1,5,9': at most {service.limits.max_seeds}."},
        "truncation": {"type": "number", "default": 1.0, "minimum": 0, "maximum": 2},
        "dropout": {"type": "boolean", "default": False},
        "noise_mode": {**text, "enum": list(inputs.NOISE_MODES), "default": "const"},
        "fit": {**text, "enum": list(FIT_CHOICES), "default": DEFAULT_FIT},
        "format": {**text, "enum": ["auto", "png", "json"], "default": "auto",
                   "description": "auto: a PNG for one result, JSON (base64 PNGs) for several."},
        "token": {**text, "description": "Optional id for GET /api/v1/progress/{token} while waiting."},
    }
    body = {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["image", "mask"], "properties": props}}}}
    responses = {"200": {"description": "The result", "content": {"image/png": {}, "application/json": {}}},
                 "400": {"description": "Bad input: {'detail': one-line reason}"},
                 "413": {"description": "Upload over the size limit"}, "503": {"description": "Queue full"}}
    return {"requestBody": body, "responses": responses}


def _inpaint_answer(results, fmt, method):
    if fmt == "png" and len(results) != 1:
        raise UserError(f"format png: {len(results)} results; ask for one seed or format=json")
    if fmt == "png" or (fmt == "auto" and len(results) == 1):
        label, seed, png = results[0]
        name = f"{method}-seed{seed:04d}.png" if seed is not None else f"{method}.png"
        return Response(png, media_type="image/png", headers={"Content-Disposition": f'inline; filename="{name}"'})
    return JSONResponse(dict(method=method, results=[
        dict(label=label, seed=seed, png=base64.b64encode(png).decode("ascii")) for label, seed, png in results]))


def _static(body, media_type):
    def serve():
        return Response(body, media_type=media_type,
                        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})
    return serve


def create_app(service, worker=None):
    """The FastAPI app of `service` (app_lib.service.Service); jobs run on `worker` (one is made if None)."""
    worker = worker or Worker()
    page = {}
    for route, (name, media_type) in PAGE_FILES.items():
        page[route] = (STATIC_DIR.joinpath(name).read_bytes(), media_type)
    # FastAPIOffline serves /docs (Swagger UI) and /redoc from files inside the fastapi-offline package, so the API
    # documentation renders on a machine without internet, like the page itself.
    app = FastAPIOffline(title="CoModGAN inpainting", version="1",
                         description="Fill the holes of a photo with CoModGAN (one result per seed) or a traditional "
                                     "method. Errors answer 4xx with {'detail': one-line reason}.")
    app.state.service, app.state.worker = service, worker

    @app.exception_handler(UserError)
    async def _user_error(request, err):
        return JSONResponse({"detail": _one_line(err)}, status_code=_status(err))

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(request, err):
        first = (err.errors() or [{}])[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid value')}"}, status_code=400)

    @app.exception_handler(Exception)
    async def _bug(request, err):  # a bug of ours: logged here, one line for the client, the server stays up
        log.exception("error in %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(err).__name__})"}, status_code=500)

    async def run_job(fn, token=None):
        return await asyncio.wrap_future(worker.submit(fn, token))

    for route, (body, media_type) in page.items():
        app.get(route, include_in_schema=False)(_static(body, media_type))

    @app.get("/api/v1/model", summary="The network and the methods on offer")
    def model():
        """Resolution and name of the loaded network (null without one), methods (`gan` first when a network is
        loaded, then the traditional methods), fit strategies, mask specs and the upload limits."""
        return service.info()

    @app.post("/api/v1/inpaint", summary="Fill the hole of an image", openapi_extra=_inpaint_schema(service))
    async def inpaint(request: Request):
        """Multipart form: `image`, `mask` (white = hole, the image's size), `method`, `seeds`, `truncation`,
        `dropout`, `noise_mode`, `fit`, `format`. Answers a PNG at the image's size (known pixels exactly the
        input's), or JSON `{method, results: [{label, seed, png (base64)}]}` for several seeds."""
        fields = await read_form(request, service.limits)
        req = parse_inpaint_form(fields, service)
        fmt = inputs.parse_choice(_form_text(fields, "format", "auto"), "format", ("auto", "png", "json"))
        token = _token(fields)
        del fields
        results = await run_job(lambda report: service.inpaint(req, report), token)
        return _inpaint_answer(results, fmt, req.method)

    @app.post("/api/v1/inspect", summary="Check an image (and a mask) without inpainting")
    async def inspect(request: Request):
        """Multipart form: `image` and optionally `mask`; answers `{width, height}` or the 4xx an inpainting
        request with them would get."""
        fields = await read_form(request, service.limits)
        image, mask = _form_bytes(fields, "image"), fields.get("mask")
        mask = None if mask is None else _form_bytes(fields, "mask")
        del fields
        return await run_job(lambda report: service.inspect(image, mask))

    @app.get("/api/v1/mask", summary="A mask drawn from a spec", response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    async def mask(spec: str = "center", width: int = 256, height: int = 256, seed: int = 0):
        """PNG of width x height, white = hole, drawn from `spec` (center, center:0.4, free-form,
        free-form-small, free-form-large, free-form:0.2-0.4) and `seed` as generate.py draws spec masks."""
        inputs.check_mask_spec(spec)
        if not 0 <= seed <= SEED_LIMIT:
            raise UserError(f"seed: {seed} is outside 0..{SEED_LIMIT}")
        png = await run_job(lambda report: service.spec_mask_png(spec, width, height, seed))
        return Response(png, media_type="image/png")

    @app.get("/api/v1/progress/{token}", summary="Progress of a request sent with `token`")
    def progress(token: str):
        """`{state: queued|running|done|unknown, ahead: requests before it, done, total}` (steps: seeds)."""
        return worker.progress(token)

    return app
