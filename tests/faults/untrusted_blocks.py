"""User blocks whose docstrings a hostile author wrote: rich markup, an unbalanced closing tag and terminal escapes.
The docstring is the block's description in `blockbench list` and `show` (blocks/zoo.py register_block)."""

from torch import nn


class _Identity(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x):
        return x + self.linear(x)


def markup_block(config, layer_index):
    """[bold red]loud[/bold red] [/x] [link=javascript:alert(1)]click[/link] \x1b[2J\x1b]0;pwned\x07 $x^$"""
    return _Identity(config.d_model)
