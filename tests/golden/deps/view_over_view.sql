-- a model over another model (a view) and over a loaded table: both are dependencies
SELECT v.day, v.n, t.target FROM analytics.daily_orders v JOIN public.targets t USING (day)
