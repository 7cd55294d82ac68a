"""Shared pieces of the Grafana dashboards: texts in two languages, the Prometheus data
source, queries, the panel kinds the dashboards use, and a board that lays panels out.

The dashboards are built with grafana-foundation-sdk, Grafana Labs' own generated builders
and models of the dashboard schema: the JSON it writes follows the schema Grafana reads, and
the same models read it back (the tests round-trip every dashboard through them). grafanalib
would do too, but it is hand-written and lags behind Grafana's schema.

The SDK lays out panels itself, but nests a row's panels inside a collapsed row and carries its
cursor across rows; so the board here places every panel explicitly (x, y, w, h on the
24-column grid) and numbers panels and queries itself, which keeps the output stable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

LANGUAGES = ("zh", "en")
GRID_COLUMNS = 24
DATASOURCE_VARIABLE = "datasource"
# Every panel and query reads the data source the `datasource` variable picks: a centre with
# several Prometheus servers (or a long-term store) chooses one without editing the JSON.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
# The data source uid of the shipped provisioning example (the variable's default).
DATASOURCE_UID = "vigil-prometheus"
TAG = "vigil"
CAMERA = 'kind=~".*camera"'


@dataclass(frozen=True)
class Text:
    """Picks the Chinese or the English text of a pair: `tr("站点", "Site")`."""

    lang: str = "zh"

    def __post_init__(self) -> None:
        if self.lang not in LANGUAGES:
            raise ValueError(f"unknown language '{self.lang}' (one of {', '.join(LANGUAGES)})")

    def __call__(self, zh: str, en: str) -> str:
        return zh if self.lang == "zh" else en


def query(expr: str, legend: str = "", *, instant: bool = False,
          table_format: bool = False) -> prometheus.Dataquery:
    """A PromQL target. Instant queries are for stats and tables of the present state."""
    q = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant or table_format:
        q = q.instant()
    else:
        q = q.range()
    if table_format:
        q = q.format(prom_model.PromQueryFormat.TABLE)
    return q


def steps(*pairs: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds: (None, base colour), (value, colour from value on), ..."""
    return (dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=v, color=c) for v, c in pairs]))


# Colours: good is green, anything that needs a person red; amber between.
OK_WHEN_ONE = steps((None, "red"), (1, "green"))
OK_WHEN_ZERO = steps((None, "green"), (1, "red"))
NEUTRAL = steps((None, "blue"))


def value_map(codes: dict[int | str, tuple[str, str]]) -> list[model.ValueMapping]:
    """Status codes shown as words and colours: {1: ("正常", "green"), ...}."""
    return [model.ValueMap(options={str(k): model.ValueMappingResult(text=t, color=c, index=i)
                                    for i, (k, (t, c)) in enumerate(codes.items())})]


def up_down(tr: Text) -> list[model.ValueMapping]:
    return value_map({1: (tr("正常", "up"), "green"), 0: (tr("故障", "down"), "red")})


def stat_panel(title: str, description: str, targets: Iterable[prometheus.Dataquery], *,
               unit: str = "none", thresholds: dashboard.ThresholdsConfig = NEUTRAL,
               mappings: list[model.ValueMapping] | None = None,
               decimals: float | None = None) -> stat.Panel:
    targets = list(targets)
    legends = all(getattr(t.build(), "legend_format", None) for t in targets)
    p = (stat.Panel().title(title).description(description).datasource(DATASOURCE)
         .targets(targets).unit(unit).thresholds(thresholds)
         .color_mode(common.BigValueColorMode.BACKGROUND)
         .graph_mode(common.BigValueGraphMode.NONE)
         .text_mode(common.BigValueTextMode.VALUE_AND_NAME if legends
                    else common.BigValueTextMode.VALUE)
         .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if mappings:
        p = p.mappings(mappings)
    if decimals is not None:
        p = p.decimals(decimals)
    return p


def series_panel(title: str, description: str, targets: Iterable[prometheus.Dataquery], *,
                 unit: str = "none", bars: bool = False,
                 thresholds: dashboard.ThresholdsConfig | None = None) -> timeseries.Panel:
    p = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
         .targets(list(targets)).unit(unit).line_width(1).fill_opacity(10)
         .legend(common_builders.VizLegendOptions().show_legend(True)
                 .display_mode(common.LegendDisplayMode.TABLE)
                 .placement(common.LegendPlacement.RIGHT).calcs(["lastNotNull", "max"])))
    if bars:
        p = p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    if thresholds is not None:
        p = p.thresholds(thresholds)
    return p


@dataclass
class Column:
    """One column of a table panel: the query's value, named and coloured."""

    name: str
    expr: str
    unit: str = "none"
    mappings: list[model.ValueMapping] | None = None
    thresholds: dashboard.ThresholdsConfig | None = None
    colour: bool = False       # colour the whole cell by thresholds or mappings


def named(expr: str, by: str) -> str:
    """`expr` (aggregated by `by`, "site" or "device") with the inventory's name of the site
    or device as a label, so a table shows 东湖社区 next to dh."""
    label = {"site": "site_name", "device": "name"}[by]
    return (f"({expr}) * on({by}) group_left({label}) "
            f"max by ({by}, {label}) (vigil_device_inventory_info)")


def label_names(tr: Text) -> dict[str, str]:
    """Column headers for the labels tables show."""
    return {"site": tr("站点", "Site"), "site_name": tr("站点名称", "Site name"),
            "device": tr("设备", "Device"), "name": tr("名称", "Name"),
            "kind": tr("类型", "Kind"), "level": tr("等级", "Level"),
            "alertname": tr("故障", "Fault"), "point": tr("接地点", "Earthing point"),
            "interface": tr("接口", "Interface"), "state": tr("状态", "State"),
            "reason": tr("原因", "Reason"), "collector": tr("采集", "Collector")}


def table_panel(tr: Text, title: str, description: str, columns: list[Column], *,
                name_by: str | None = None,
                hide: Iterable[str] = (), links: dict[str, str] | None = None) -> table.Panel:
    """A table of the present state: one instant query per column, merged into one row per
    label set (so every column's query aggregates to the same labels; a row missing a value
    still shows), Prometheus' own labels hidden. `name_by` adds the inventory names."""
    targets = [query(named(c.expr, name_by) if name_by else c.expr, instant=True,
                     table_format=True).ref_id(_ref(i)) for i, c in enumerate(columns)]
    p = (table.Panel().title(title).description(description).datasource(DATASOURCE)
         .targets(targets).cell_height(common.TableCellHeight.SM))
    renames = label_names(tr)
    renames |= ({"Value": columns[0].name} if len(columns) == 1 else
                {f"Value #{_ref(i)}": c.name for i, c in enumerate(columns)})
    excluded = {name: True for name in ("Time", "__name__", "instance", "job", *hide)}
    transforms = [model.DataTransformerConfig(id_val="merge", options={}),
                  model.DataTransformerConfig(id_val="organize", options={
                      "excludeByName": excluded, "renameByName": renames,
                      "indexByName": {}})]
    p = p.transformations(transforms)
    for c in columns:
        props = [model.DynamicConfigValue(id_val="unit", value=c.unit)]
        if c.mappings:
            props.append(model.DynamicConfigValue(id_val="mappings", value=c.mappings))
        if c.thresholds is not None:
            props.append(model.DynamicConfigValue(id_val="thresholds", value=c.thresholds.build()))
        if c.colour:
            props.append(model.DynamicConfigValue(id_val="custom.cellOptions",
                                                  value={"type": "color-background"}))
        p = p.override_by_name(c.name, props)
    for name, url in (links or {}).items():
        p = p.override_by_name(name, [model.DynamicConfigValue(
            id_val="links", value=[{"title": name, "url": url}])])
    return p


def gauge_bars(title: str, description: str, targets: Iterable[prometheus.Dataquery], *,
               unit: str = "none", thresholds: dashboard.ThresholdsConfig = NEUTRAL,
               max_value: float | None = None) -> bargauge.Panel:
    p = (bargauge.Panel().title(title).description(description).datasource(DATASOURCE)
         .targets(list(targets)).unit(unit).thresholds(thresholds)
         .display_mode(common.BarGaugeDisplayMode.BASIC)
         .orientation(common.VizOrientation.HORIZONTAL)
         .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if max_value is not None:
        p = p.min(0).max(max_value)
    return p


def _ref(i: int) -> str:
    return chr(ord("A") + i)


def site_variable(tr: Text, *, multi: bool = False) -> dashboard.QueryVariable:
    v = (dashboard.QueryVariable("site").label(tr("站点", "Site")).datasource(DATASOURCE)
         .query("label_values(vigil_device_inventory_info, site)")
         .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))
    if multi:
        v = v.multi(True).include_all(True).all_value(".*")
    return v


def device_variable(tr: Text) -> dashboard.QueryVariable:
    return (dashboard.QueryVariable("device").label(tr("设备", "Device")).datasource(DATASOURCE)
            .query('label_values(vigil_device_inventory_info{site=~"$site"}, device)')
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC))


@dataclass
class Board:
    """One dashboard being built: panels placed left to right, a new line when the 24
    columns are full, rows as full-width headers; ids and query refIds numbered in order."""

    uid: str
    title: str
    description: str
    tr: Text
    variables: list[cogbuilder.Builder[model.VariableModel]] = field(default_factory=list)
    _panels: list[cogbuilder.Builder[Any]] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _line: int = 0

    def row(self, title: str) -> None:
        self._newline()
        self._panels.append(dashboard.Row(title).collapsed(False).id(len(self._panels) + 1)
                            .grid_pos(model.GridPos(x=0, y=self._y, w=GRID_COLUMNS, h=1)))
        self._y += 1

    def add(self, panel: Any, w: int, h: int) -> None:
        if not 0 < w <= GRID_COLUMNS:
            raise ValueError(f"panel width {w} is not within 1..{GRID_COLUMNS}")
        if self._x + w > GRID_COLUMNS:
            self._newline()
        built = panel.build()
        for i, target in enumerate(built.targets or []):
            if not getattr(target, "ref_id", None):
                target.ref_id = _ref(i)
        self._panels.append(panel.id(len(self._panels) + 1)
                            .grid_pos(model.GridPos(x=self._x, y=self._y, w=w, h=h)))
        self._x += w
        self._line = max(self._line, h)

    def _newline(self) -> None:
        if self._x:
            self._y += self._line
        self._x, self._line = 0, 0

    def build(self) -> model.Dashboard:
        datasource = (dashboard.DatasourceVariable(DATASOURCE_VARIABLE)
                      .label(self.tr("数据源", "Data source")).type("prometheus")
                      .current(model.VariableOption(selected=True, text=DATASOURCE_UID,
                                                    value=DATASOURCE_UID)))
        d = (dashboard.Dashboard(self.title).uid(self.uid).description(self.description)
             .tags([TAG]).editable().refresh("1m").time("now-6h", "now")
             .timezone("browser").tooltip(model.DashboardCursorSync.CROSSHAIR)
             .with_variable(datasource).link(
                 dashboard.DashboardLink(self.tr("Vigil 看板", "Vigil dashboards"))
                 .type(model.DashboardLinkType.DASHBOARDS).tags([TAG]).as_dropdown(True)
                 .include_vars(False).keep_time(True)))
        for v in self.variables:
            d = d.with_variable(v)
        for p in self._panels:
            d = d.with_row(p) if isinstance(p, dashboard.Row) else d.with_panel(p)
        return d.build()


def to_json(board: model.Dashboard) -> str:
    """The dashboard as Grafana reads it (stable: keys in the SDK's order, UTF-8 kept)."""
    return json.dumps(board, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def targets(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (panel, target) of a dashboard's JSON, rows' nested panels included."""
    for panel in data.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets") or []:
                yield inner, target
