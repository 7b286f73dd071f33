"""Reports: certificate files, operator pages with plots, and model audits."""
