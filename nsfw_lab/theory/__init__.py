"""Small, fast experiments behind the theory notebooks (residual learning on scikit-learn's digits)."""
