"""One module per output: terminal tables and progress, HTML/Markdown/CSV reports, plots."""
