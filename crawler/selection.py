"""What the user pointed at: data sets, products, criteria, atlases and a section range."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Selection:
    """What the user pointed at; the options combine (union, de-duplicated by id)."""

    data_sets: tuple[int, ...] = ()  # --dataset and --ids-file
    products: tuple[int, ...] = ()
    criteria: tuple[str, ...] = ()  # free SectionDataSet criteria
    atlases: tuple[int, ...] = ()
    sections: tuple[int, int] | None = None  # section numbers A to B, inclusive

    @property
    def empty(self) -> bool:
        return not (self.data_sets or self.products or self.criteria or self.atlases)

    def describe(self) -> dict[str, object]:
        document: dict[str, object] = {"data_sets": list(self.data_sets)}
        for name, values in (
            ("products", self.products),
            ("criteria", self.criteria),
            ("atlases", self.atlases),
        ):
            if values:
                document[name] = list(values)
        if self.sections is not None:
            document["sections"] = f"{self.sections[0]}-{self.sections[1]}"
        return document
