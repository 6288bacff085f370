"""PNG previews of the dashboards (the dashboards themselves are code in linborg/dashboards/)."""
