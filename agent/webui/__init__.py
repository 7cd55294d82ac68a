"""The agent's small web UI (/ui/): technicians' tickets, the owner's confirmations and
sign-offs, reports, the engineers' inventory and rule status. See docs/webui.md."""

from agent.webui.pages import add_webui_routes

__all__ = ["add_webui_routes"]
