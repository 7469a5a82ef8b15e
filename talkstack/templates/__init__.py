"""Templates: versioned documents that describe a composition with typed variables and defaults
(docs/templates.md). Bundled ones live in talkstack/assets/templates; operators add their own.

    parse_template(data)                       → TemplateDocument (TEMPLATE_INVALID lists every problem)
    instantiate(template, variables, resolve_asset=…) → a composition request dict
                                               (TEMPLATE_VARIABLES_INVALID lists every problem)
    bundled_templates(), get_template(id), asset_path("asset name")
"""

from talkstack.contract.template import TemplateDocument, TemplateVariable
from talkstack.templates.assets import asset_path, bundled_asset_names, is_asset
from talkstack.templates.document import (
    bundled_templates,
    get_template,
    load_template,
    parse_template,
    read_template_data,
)
from talkstack.templates.variables import instantiate

__all__ = [
    "TemplateDocument",
    "TemplateVariable",
    "asset_path",
    "bundled_asset_names",
    "bundled_templates",
    "get_template",
    "instantiate",
    "is_asset",
    "load_template",
    "parse_template",
    "read_template_data",
]
