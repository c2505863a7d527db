"""PyTorch adapter for mutnas."""
