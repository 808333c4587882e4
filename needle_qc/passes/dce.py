"""``dce``: erase nodes whose values nobody uses (placeholders and the output stay)."""

from needle_qc.passes import register_pass


@register_pass("dce")
def dead_code_elimination(graph):
    """Erase unused nodes in place (tensors only they referenced go too); True if any went."""
    return graph.eliminate_dead_code()
