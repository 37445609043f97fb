"""Getting galaxies from SDSS: the query, the services, the labels, the cutouts."""
