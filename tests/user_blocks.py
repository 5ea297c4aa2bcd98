"""Deliberately broken user blocks for the CLI's bad-input tests."""


def not_a_module(config, layer_index):
    return 3
