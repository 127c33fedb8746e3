"""A whole run around the library: data -> VAE -> training -> evaluation -> files (experiment), its
folder (run_folder), its report and figures (report, plots) and TensorBoard events."""
