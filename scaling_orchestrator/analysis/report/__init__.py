"""What a person reads: the text summary, report.md / report.html and their plots, the shape study."""
