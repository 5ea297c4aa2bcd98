"""Views over run records: leaderboards (selection.py, columns.py, leaderboard.py, plots.py), the results index,
compare, the claims report, and the one page model they render (page.py, plotstyle.py). Nothing below views/
imports a view; no view parses arguments: the commands that print them live in commands/."""
