"""The helpers of `demo.py`: the faces scikit-image ships as a dataset, and the demo report."""
