"""Reading the untrusted exchange: load files into models or into one-line problems."""
