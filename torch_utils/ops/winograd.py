"""3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) or F(2x2, 3x3) (Lavin & Gray, 2016), for
CPU inference.

F(m x m, 3x3) computes an m x m output tile from an (m + 2) x (m + 2) input window with (m + 2)^2 multiplies per
(input, output) channel pair instead of 9 m^2: 36 instead of 144 for F(4x4), 16 instead of 36 for F(2x2). The
convolution becomes (m + 2)^2 independent [tiles, C_in] x [C_in, C_out] matrix products between transforms that
are small matrix products themselves. It beats oneDNN's direct float32 convolution where those products dominate
(wide layers at modest resolution); with few channels the transforms' memory traffic eats the gain, so callers
choose (inference.conv_plan measures where).

Numerics: F(4x4) uses the interpolation points 0, +-1, +-2 and infinity, whose coefficients (up to 8, and 1/24
in the weight transform) cost about 2 bits of float32 precision: ~4x the rounding error of a direct convolution
(seen: 6e-5 vs 1.5e-5 max abs on unit-variance outputs of a 512-channel layer). F(2x2) uses 0, +-1 and infinity
(coefficients 1 and 1/2) and stays close to a direct convolution's error.
"""

import torch
import torch.nn.functional as F

# y = A^T [(G g G^T) * (B^T d B)] A over (m+2)x(m+2) input tiles d and 3x3 kernels g (correlation, as conv2d
# computes it); Lavin & Gray's matrices.
_F4 = dict(
    BT=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    G=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
       [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
)
_F2 = dict(
    BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    G=[[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
    AT=[[1, 1, 1, 0], [0, 1, -1, -1]],
)
TILES = (4, 2)  # the output tile sizes m this module offers


def _kron(m):
    """kron(m, m) in float32, computed in float64: the 2-D transform as one matrix over flattened tiles."""
    t = torch.tensor(m, dtype=torch.float64)
    return torch.kron(t, t).float()


# tile -> (B [w^2, w^2], G [w^2, 9], A [m^2, w^2]) with window w = m + 2
_MATS = {4: tuple(_kron(_F4[k]) for k in ("BT", "G", "AT")), 2: tuple(_kron(_F2[k]) for k in ("BT", "G", "AT"))}


def transform_weight(w, tile=4):
    """Weight [C_out, C_in, 3, 3] -> U [(tile+2)^2, C_in, C_out], the operand of conv3x3() (which reads the tile
    size from U's first dimension); compute once per weight."""
    if tile not in _MATS:
        raise ValueError(f"winograd: tile must be one of {TILES}, got {tile}")
    c_out, c_in = w.shape[:2]
    assert w.shape[2:] == (3, 3), w.shape
    gg = _MATS[tile][1]
    g = w.detach().float().reshape(c_out, c_in, 9).permute(2, 1, 0).reshape(9, c_in * c_out)
    return (gg @ g).view(gg.shape[0], c_in, c_out)


def conv3x3(x, u, bias=None):
    """conv2d(x, w, bias, padding=1) for x [N, C_in, H, W] float32 and u = transform_weight(w, tile).

    Returns [N, C_out, H, W] in channels_last (a permuted view of an NHWC buffer), like oneDNN's output."""
    n, c_in, h, w = x.shape
    c_out = u.shape[2]
    tile = {36: 4, 16: 2}.get(u.shape[0])
    assert tile is not None and u.shape[1] == c_in, (u.shape, x.shape)
    bb, _, aa = _MATS[tile]
    window = tile + 2
    th, tw = -(-h // tile), -(-w // tile)
    # Pad by 1 for the convolution and up to whole tiles; overlapping windows with stride `tile`.
    xp = F.pad(x, (1, 1 + tile * tw - w, 1, 1 + tile * th - h)).permute(0, 2, 3, 1)  # NHWC view
    windows = xp.unfold(1, window, tile).unfold(2, window, tile)  # [N, th, tw, C_in, window, window]
    d = windows.permute(4, 5, 0, 1, 2, 3).reshape(window**2, -1)  # [w^2, N*th*tw*C_in], one copy
    v = (bb @ d).view(window**2, n * th * tw, c_in)
    m = torch.bmm(v, u).view(window**2, -1)  # [w^2, N*th*tw*C_out]
    y = aa @ m if bias is None else torch.addmm(bias.repeat(n * th * tw), aa, m)
    y = y.view(tile, tile, n, th, tw, c_out).permute(2, 3, 0, 4, 1, 5).reshape(n, tile * th, tile * tw, c_out)
    return y[:, :h, :w].permute(0, 3, 1, 2)
