"""MXNet models: architectures (`zoo`), the one model thread (`engine`), saved bundles (`bundle`)."""
