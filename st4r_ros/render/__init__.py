"""One render() API over a gsplat (CUDA) backend and a pure-torch (CPU, reference) backend."""
