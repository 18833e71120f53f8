"""What the tests and the benchmarks both use: a poster server that misbehaves on request (the downloader's),
the page's server in headless Chromium, and scikit-multilearn's ML-kNN as the reference for ours."""
