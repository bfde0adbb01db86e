"""3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016), for CPU inference.

Each 4x4 output tile costs 36 multiplies per (input, output) channel pair instead of 144: the convolution
becomes 36 independent [tiles, C_in] x [C_in, C_out] matrix products between transforms that are small
matrix products themselves. On the CPU it beats oneDNN's direct float32 convolution where the matrix
products dominate, i.e. wide layers at modest resolution (512 channels at 8..64 px: about 2.3x at 64 px);
at 128+ px with 256 or fewer channels the transforms' memory traffic eats the gain, so callers choose.

Numerics: the transforms use the interpolation points 0, +-1, +-2 and infinity, whose coefficients (up to 8,
and 1/24 in the weight transform) cost about 2 bits of float32 precision: ~4x the rounding error of a
direct convolution (seen: 6e-5 vs 1.5e-5 max abs on unit-variance outputs of a 512-channel layer).
"""

import torch
import torch.nn.functional as F

# F(4x4, 3x3): y = A^T [(G g G^T) * (B^T d B)] A over 6x6 input tiles d and 3x3 kernels g (correlation, as
# conv2d computes it).
_BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
_G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
TILE, WINDOW = 4, 6


def _kron(m):
    """kron(m, m) in float32, computed in float64: the 2-D transform as one matrix over flattened tiles."""
    t = torch.tensor(m, dtype=torch.float64)
    return torch.kron(t, t).float()


_BB, _GG, _AA = _kron(_BT), _kron(_G), _kron(_AT)  # [36, 36], [36, 9], [16, 36]


def transform_weight(w):
    """Weight [C_out, C_in, 3, 3] -> U [36, C_in, C_out], the operand of conv3x3(); compute once per weight."""
    c_out, c_in = w.shape[:2]
    assert w.shape[2:] == (3, 3), w.shape
    g = w.detach().float().reshape(c_out, c_in, 9).permute(2, 1, 0).reshape(9, c_in * c_out)
    return (_GG @ g).view(36, c_in, c_out)


def conv3x3(x, u, bias=None):
    """conv2d(x, w, bias, padding=1) for x [N, C_in, H, W] float32 and u = transform_weight(w).

    Returns [N, C_out, H, W] in channels_last (a permuted view of an NHWC buffer), like oneDNN's output."""
    n, c_in, h, w = x.shape
    c_out = u.shape[2]
    assert u.shape[:2] == (36, c_in), (u.shape, x.shape)
    th, tw = -(-h // TILE), -(-w // TILE)
    # Pad by 1 for the convolution and up to whole tiles; overlapping 6x6 windows with stride 4.
    xp = F.pad(x, (1, 1 + TILE * tw - w, 1, 1 + TILE * th - h)).permute(0, 2, 3, 1)  # NHWC view
    windows = xp.unfold(1, WINDOW, TILE).unfold(2, WINDOW, TILE)  # [N, th, tw, C_in, 6, 6]
    d = windows.permute(4, 5, 0, 1, 2, 3).reshape(36, -1)  # [36, N*th*tw*C_in], one copy
    v = (_BB @ d).view(36, n * th * tw, c_in)
    m = torch.bmm(v, u).view(36, -1)  # [36, N*th*tw*C_out]
    y = _AA @ m if bias is None else torch.addmm(bias.repeat(n * th * tw), _AA, m)
    y = y.view(TILE, TILE, n, th, tw, c_out).permute(2, 3, 0, 4, 1, 5).reshape(n, TILE * th, TILE * tw, c_out)
    return y[:, :h, :w].permute(0, 3, 1, 2)
