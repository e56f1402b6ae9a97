"""Source feeds: one reader per landing-zone source, the loader, and the synthetic generator."""

from sources import catalog, crm, helpdesk, partner, web
from sources.spec import SourceSpec

SOURCES: dict[str, SourceSpec] = {
    module.SOURCE.name: module.SOURCE for module in (crm, web, helpdesk, partner, catalog)
}
