"""Reports people read, sign and file: HTML (served by the agent), PDF and XLSX.

render.py renders any report (Jinja2 templates in templates/, WeasyPrint, openpyxl);
charts.py draws its pictures (matplotlib); each report is a module of its own that gathers
its facts and says how they are laid out: ticket.py, the diagnosis and maintenance report
of one ticket. api.py serves them under /api/v1/reports/.
"""
