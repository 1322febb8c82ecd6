//! The dashboard (issue [8/9]): tera templates, view models and handlers over a data trait.
