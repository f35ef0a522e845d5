"""Drawing molecules with RDKit for the chapters (a grid image that notebooks display inline)."""

from __future__ import annotations

from marabook._validate import check_int
from marabook.chem.oracles import check_smiles_list, mol_from_smiles

__all__ = ["draw_grid"]


def draw_grid(smiles, legends=None, per_row: int = 6, size: int | None = None, width: int = 690):
    """An RDKit grid image (PNG-backed, displays in Jupyter) of the valid molecules in ``smiles``;
    ``legends`` (same length) label them. Invalid strings are skipped.

    Each molecule is drawn in a ``size`` x ``size`` pixel box; by default ``size`` fills ``width`` pixels
    (the book's content column) with one row of ``per_row`` molecules, so the grid is as wide as the column.
    """
    from rdkit.Chem import Draw

    smiles = check_smiles_list(smiles, "smiles")
    if legends is not None and len(legends) != len(smiles):
        raise ValueError("legends must have the same length as smiles")
    check_int(per_row, "per_row", minimum=1)
    check_int(width, "width", minimum=60)
    if size is not None:
        check_int(size, "size", minimum=60)
    pairs = [(mol_from_smiles(s), (legends[i] if legends is not None else "")) for i, s in enumerate(smiles)]
    pairs = [(m, lab) for m, lab in pairs if m is not None]
    if not pairs:
        raise ValueError("smiles contains no valid molecule")
    if size is None:
        size = width // min(per_row, len(pairs))
    return Draw.MolsToGridImage([m for m, _ in pairs], molsPerRow=per_row, subImgSize=(size, size),
                                legends=[str(lab) for _, lab in pairs], useSVG=False)
