"""RMA metadata queries against the running simulator, plus the pure parser underneath."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from crawler.simulator import Catalogue, Simulator, expected_bytes
from crawler.simulator.rma import (
    MAX_NUM_ROWS,
    AssocFilter,
    FieldFilter,
    Include,
    RmaError,
    parse_stages,
    split_top,
)

SECTIONS = 4


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.build(
        sections_per_dataset=SECTIONS,
        extra_connectivity_datasets=3,
        extra_ish_datasets=1,
        image_scale=0.02,
    )


async def fetch(
    http: aiohttp.ClientSession, served: Simulator, path: str | URL, status: int = 200
) -> Any:
    url = path if isinstance(path, URL) else URL(served.base_url + path)
    async with http.get(url) as response:
        assert response.status == status, await response.text()
        assert response.content_type == "application/json"
        return json.loads(await response.read())


def stages_url(stages: str, key: str = "criteria") -> str:
    return f"/api/v2/data/query.json?{key}={stages}"


def ids(envelope: dict[str, Any]) -> list[int]:
    return [row["id"] for row in envelope["msg"]]


# -- pure parser -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a,b", ["a", "b"]),
        ("[id$in1,2,3],x", ["[id$in1,2,3]", "x"]),
        ("a(b[c$eq1],d),e", ["a(b[c$eq1],d)", "e"]),
        ("[name$eq'Mouse, P56, Coronal'],y", ["[name$eq'Mouse, P56, Coronal']", "y"]),
    ],
)
def test_split_top_respects_brackets_and_quotes(text: str, parts: list[str]) -> None:
    assert split_top(text) == parts


def test_parse_stages_full_example() -> None:
    query = parse_stages(
        "model::SectionImage,rma::criteria,[data_set_id$eq100141599],rma::include,alignment2d,"
        "rma::options[num_rows$eq2000][start_row$eq0][order$eq'id']"
    )
    assert query.model == "SectionImage"
    assert query.criteria == (FieldFilter("data_set_id", "eq", ("100141599",)),)
    assert query.includes == (Include("alignment2d"),)
    assert (query.options.num_rows, query.options.start_row) == (2000, 0)
    assert query.options.order == (("id", False),)


def test_parse_nested_association_and_options() -> None:
    query = parse_stages(
        "model::AtlasImage,rma::criteria,atlas_data_set(atlases[id$eq1]),"
        "rma::options[order$eq'sub_images.section_number$desc'][num_rows$eq'all'][count$eqfalse]"
    )
    assert query.criteria == (
        AssocFilter(
            "atlas_data_set", (), (AssocFilter("atlases", (FieldFilter("id", "eq", ("1",)),), ()),)
        ),
    )
    assert query.options.num_rows is None
    assert query.options.order == (("sub_images.section_number", True),)
    assert query.options.count is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[id$in1,2,3]", ("1", "2", "3")),
        ("[name$in'a','b c']", ("a", "b c")),
        ("[x$eqnull]", (None,)),
    ],
)
def test_parse_filter_values(raw: str, expected: tuple[str | None, ...]) -> None:
    (criterion,) = parse_stages(f"model::Product,rma::criteria,{raw}").criteria
    assert isinstance(criterion, FieldFilter)
    assert criterion.values == expected


def test_num_rows_is_capped_at_the_documented_maximum() -> None:
    query = parse_stages("model::SectionImage,rma::options[num_rows$eq100000]")
    assert query.options.num_rows == MAX_NUM_ROWS


@pytest.mark.parametrize(
    "text",
    [
        "SectionImage",
        "model::A,model::B",
        "model::X,pipe::list[x$eq1]",
        "model::X,rma::criteria,[id$zz1]",
        "model::X,rma::criteria,[id$eq1",
    ],
)
def test_parse_rejects_malformed_queries(text: str) -> None:
    with pytest.raises(RmaError):
        parse_stages(text)


# -- URL forms -------------------------------------------------------------------------------

SECTION_IMAGES = (
    "model::SectionImage,rma::criteria,[data_set_id$eq100141599],"
    "rma::options[num_rows$eq2000][start_row$eq0][order$eq'id']"
)


async def test_criteria_and_q_forms_agree(served: Simulator, http: aiohttp.ClientSession) -> None:
    by_criteria = await fetch(http, served, stages_url(SECTION_IMAGES))
    by_q = await fetch(http, served, stages_url(SECTION_IMAGES, key="q"))
    assert by_criteria == by_q
    assert by_criteria["success"] is True and by_criteria["id"] == 0
    assert by_criteria["num_rows"] == SECTIONS == len(by_criteria["msg"])
    assert 102146167 in ids(by_criteria)
    assert ids(by_criteria) == sorted(ids(by_criteria))
    assert list(by_criteria) == ["success", "id", "start_row", "num_rows", "total_rows", "msg"]


async def test_fully_percent_encoded_query_is_decoded(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    encoded = URL(f"{served.base_url}{stages_url(quote(SECTION_IMAGES, safe=''))}", encoded=True)
    assert "%5B" in str(encoded) and "%27" in str(encoded)
    assert await fetch(http, served, encoded) == await fetch(
        http, served, stages_url(SECTION_IMAGES)
    )


@pytest.mark.parametrize("space", ["+", "%20", " "])
async def test_spaces_in_values_decode(
    served: Simulator, http: aiohttp.ClientSession, space: str
) -> None:
    stages = f"model::Product,rma::criteria,[name$eq'Mouse{space}Brain']"
    raw = f"{served.base_url}/api/v2/data/query.json?q={stages}"
    envelope = await fetch(http, served, URL(raw, encoded=space != " "))
    assert ids(envelope) == [1]


async def test_record_by_id_with_includes(served: Simulator, http: aiohttp.ClientSession) -> None:
    envelope = await fetch(
        http,
        served,
        "/api/v2/data/SectionDataSet/100141599.json?include=equalization,products,section_images",
    )
    (record,) = envelope["msg"]
    equalization = record["equalization"]
    assert [
        equalization[f"{c}_{e}"] for c in ("red", "green", "blue") for e in ("lower", "upper")
    ] == [
        0,
        923,
        0,
        987,
        0,
        4095,
    ]
    assert [p["id"] for p in record["products"]] == [5]
    assert len(record["section_images"]) == SECTIONS
    assert record["plane_of_section_id"] == 1


async def test_unknown_record_is_an_empty_success(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    envelope = await fetch(http, served, "/api/v2/data/SectionDataSet/1.json")
    assert envelope == {
        "success": True,
        "id": 0,
        "start_row": 0,
        "num_rows": 0,
        "total_rows": 0,
        "msg": [],
    }


async def test_legacy_query_with_top_level_options(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    everything = await fetch(http, served, stages_url(SECTION_IMAGES))
    page = await fetch(
        http,
        served,
        "/api/v2/data/SectionImage/query.json?criteria=[data_set_id$eq100141599]"
        "&num_rows=2&start_row=1&order=id&include=alignment2d",
    )
    assert ids(page) == ids(everything)[1:3]
    assert page["start_row"] == 1 and page["num_rows"] == 2
    assert all(row["alignment2d"]["section_image_id"] == row["id"] for row in page["msg"])


# -- filters ---------------------------------------------------------------------------------


async def rows(
    http: aiohttp.ClientSession, served: Simulator, model: str, criteria: str
) -> list[int]:
    stages = f"model::{model},rma::criteria,{criteria},rma::options[num_rows$eq'all']"
    return ids(await fetch(http, served, stages_url(stages)))


async def test_boolean_filters_quoted_or_not(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    quoted = await rows(http, served, "SectionDataSet", "[failed$eq'true']")
    bare = await rows(http, served, "SectionDataSet", "[failed$eqtrue]")
    assert quoted == bare == [500000001]
    healthy = await rows(http, served, "SectionDataSet", "[failed$eq'false']")
    assert 500000001 not in healthy and 100141599 in healthy


async def test_comparison_and_in_filters(
    served: Simulator, http: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    assert await rows(http, served, "Product", "[id$in1,5]") == [1, 5]
    assert await rows(http, served, "Product", "[id$ne3]") == [1, 5]
    assert await rows(http, served, "Product", "[id$gt1][id$le3]") == [3]
    failed = await rows(http, served, "SectionImage", "[data_set_id$eq100141599][failed$eqtrue]")
    assert len(failed) == 1 and catalogue.tables["SectionImage"][failed[0]]["failed"] is True


async def test_like_filters_use_star_wildcards(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    assert await rows(http, served, "Product", "[name$li'Mouse*']") == [1, 5]
    assert await rows(http, served, "Product", "[name$li'mouse*']") == []
    assert await rows(http, served, "Product", "[name$il'mouse*']") == [1, 5]
    assert await rows(http, served, "Product", "[name$il'*connectivity*']") == [5]
    cre = await rows(
        http, served, "SectionDataSet", "specimen(donor(transgenic_lines[name$li'*Cre*']))"
    )
    assert cre and 100141599 not in cre and 500000001 in cre


async def test_product_association_filters(served: Simulator, http: aiohttp.ClientSession) -> None:
    connectivity = await rows(http, served, "SectionDataSet", "products[id$eq5]")
    assert {100141599, 126862385, 500000001} <= set(connectivity)
    assert len(connectivity) == 3 + 3  # three named + three extra connectivity data sets
    ish = await rows(http, served, "SectionDataSet", "products[id$eq1]")
    assert 69782969 in ish and not set(ish) & set(connectivity)
    visp = await rows(
        http,
        served,
        "SectionDataSet",
        "products[id$eq5],"
        "specimen(stereotaxic_injections(primary_injection_structure[acronym$eq'VISp']))",
    )
    assert 126862385 in visp and 100141599 not in visp


async def test_atlas_images_by_atlas_ordered_by_section_number(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    stages = (
        "model::AtlasImage,rma::criteria,atlas_data_set(atlases[id$eq1]),"
        "rma::options[order$eq'sub_images.section_number'][num_rows$eq'all']"
    )
    envelope = await fetch(http, served, stages_url(stages))
    assert 100883869 in ids(envelope)
    numbers = [row["section_number"] for row in envelope["msg"]]
    assert numbers == sorted(numbers) and len(numbers) == SECTIONS


async def test_nested_association_finds_sibling_sections(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    siblings = await rows(
        http, served, "SectionImage", "section_data_set(section_images[id$in102146167])"
    )
    assert len(siblings) == SECTIONS and 102146167 in siblings
    same = await rows(http, served, "SectionImage", "data_set[id$eq100141599]")
    assert same == siblings


async def test_order_descending_differs_from_id_order(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    base = "model::SectionImage,rma::criteria,[data_set_id$eq69782969],rma::options"
    by_number = await fetch(http, served, stages_url(base + "[order$eq'section_number']"))
    by_id = await fetch(http, served, stages_url(base + "[order$eq'id']"))
    descending = await fetch(http, served, stages_url(base + "[order$eq'section_number$desc']"))
    assert ids(by_number) == list(reversed(ids(by_id)))  # ISH ids fall as sections rise
    assert ids(descending) == ids(by_id)


async def test_only_and_except(served: Simulator, http: aiohttp.ClientSession) -> None:
    only = await fetch(http, served, stages_url("model::Product,rma::options[only$eq'id,name']"))
    assert all(set(row) == {"id", "name"} for row in only["msg"])
    without = await fetch(
        http, served, stages_url("model::Product,rma::options[except$eq'description']")
    )
    assert all("description" not in row and "abbreviation" in row for row in without["msg"])


async def test_unionizes_for_one_data_set(served: Simulator, http: aiohttp.ClientSession) -> None:
    stages = (
        "model::ProjectionStructureUnionize,rma::criteria,[section_data_set_id$eq126862385],"
        "rma::options[num_rows$eq'all']"
    )
    envelope = await fetch(http, served, stages_url(stages))
    assert envelope["num_rows"] == envelope["total_rows"] > 50
    assert {row["section_data_set_id"] for row in envelope["msg"]} == {126862385}
    assert {row["hemisphere_id"] for row in envelope["msg"]} == {1, 2, 3}
    assert {"projection_density", "projection_volume", "is_injection", "structure_id"} <= set(
        envelope["msg"][0]
    )


# -- paging ----------------------------------------------------------------------------------

UNIONIZES = "model::ProjectionStructureUnionize,rma::criteria,[section_data_set_id$eq100141599]"


async def test_default_page_size_is_50(served: Simulator, http: aiohttp.ClientSession) -> None:
    envelope = await fetch(http, served, stages_url(UNIONIZES))
    assert envelope["num_rows"] == 50 and envelope["total_rows"] > 50


async def test_paging_walk_and_empty_page_past_the_end(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    collected: list[int] = []
    start = 0
    while True:
        options = f",rma::options[num_rows$eq30][start_row$eq{start}][order$eq'id']"
        page = await fetch(http, served, stages_url(UNIONIZES + options))
        assert page["start_row"] == start
        collected += ids(page)
        start += page["num_rows"]
        if page["num_rows"] < 30:
            break
    assert len(collected) == len(set(collected)) == page["total_rows"]
    past = await fetch(
        http, served, stages_url(UNIONIZES + f",rma::options[start_row$eq{start + 100}]")
    )
    assert past["success"] is True and past["msg"] == [] and past["num_rows"] == 0


async def test_total_rows_overstates_joined_section_images(
    served: Simulator, http: aiohttp.ClientSession
) -> None:
    envelope = await fetch(http, served, stages_url(SECTION_IMAGES))
    assert envelope["total_rows"] > envelope["num_rows"] == SECTIONS
    served.config.overstate_total_rows = False
    honest = await fetch(http, served, stages_url(SECTION_IMAGES))
    assert honest["total_rows"] == SECTIONS and ids(honest) == ids(envelope)


async def test_count_false_reports_the_page(served: Simulator, http: aiohttp.ClientSession) -> None:
    envelope = await fetch(
        http, served, stages_url(UNIONIZES + ",rma::options[num_rows$eq10][count$eqfalse]")
    )
    assert envelope["num_rows"] == envelope["total_rows"] == 10


async def test_expected_bytes_matches_served_json(
    served: Simulator, http: aiohttp.ClientSession, catalogue: Catalogue
) -> None:
    path = stages_url(SECTION_IMAGES)
    async with http.get(served.base_url + path) as response:
        assert await response.read() == expected_bytes(catalogue, path)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        (stages_url("model::NoSuchModel"), "Unknown model"),
        (
            stages_url("model::SectionImage,rma::criteria,[colour$eq1]"),
            "Data Access error in query: unknown attribute 'colour' for model SectionImage",
        ),
        (
            stages_url("model::SectionImage,rma::criteria,nowhere[id$eq1]"),
            "Data Access error in query: unknown association 'nowhere' for model SectionImage",
        ),
        (
            stages_url("model::SectionImage,rma::include,nowhere"),
            "Data Access error in query: unknown association 'nowhere' for model SectionImage",
        ),
        (
            stages_url("model::SectionDataSet,rma::criteria,[transgenic_line$eq'Sst-IRES-Cre']"),
            "unknown attribute 'transgenic_line' for model SectionDataSet",
        ),
        (
            stages_url("model::SectionDataSet,rma::criteria,[injection_structure$eq'VISp']"),
            "unknown attribute 'injection_structure' for model SectionDataSet",
        ),
        (
            stages_url("model::Specimen,rma::criteria,donor(transgenic_line[name$eq'x'])"),
            "unknown association 'transgenic_line' for model Donor",
        ),
        (stages_url("rma::criteria,[id$eq1]"), ""),
        (stages_url("model::SectionImage,rma::criteria,[id$eq'abc']"), "Invalid value"),
        ("/api/v2/data/query.json", "Missing"),
        ("/api/v2/data/Nope/query.json?criteria=[id$eq1]", "Unknown model"),
    ],
)
async def test_bad_queries_fail_with_success_false(
    served: Simulator, http: aiohttp.ClientSession, path: str, fragment: str
) -> None:
    envelope = await fetch(http, served, path, status=500)
    assert envelope["success"] is False and envelope["id"] == -1
    assert isinstance(envelope["msg"], str) and fragment in envelope["msg"]


async def test_xml_format_is_refused(served: Simulator, http: aiohttp.ClientSession) -> None:
    envelope = await fetch(
        http, served, "/api/v2/data/query.xml?criteria=model::Product", status=400
    )
    assert envelope["success"] is False
