"""PNG previews of the dashboards (the dashboards are code in linborg/mixin/dashboards/)."""
