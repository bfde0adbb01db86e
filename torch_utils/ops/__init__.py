"""Custom ops (fused bias+activation, upfirdn2d, resampling convolution, modulated convolution):
CUDA kernels where they build, a pure-PyTorch reference everywhere else."""
