"""The subcommands, one module each: its arguments (`add_parser(sub)`) and the function that runs it (registered
with it), calling the package's measures and views and printing what they return. cli.py builds the top-level
parser over them (cli.command_modules) and turns errors into exit codes; nothing below imports from here."""
