// Every test in this assembly belongs to the "System" category, so that `--filter TestCategory!=System` over the
// whole solution runs the fast tests only (the fast project has none of them).
[assembly: Category("System")]
