"""Result records, console tables, figures and the regression check. Renders; runs nothing."""
