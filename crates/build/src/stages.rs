//! The stage graph: which stage needs which (`FROM stage`, `COPY --from`,
//! `RUN --mount=from=`), cycle detection, `--target` pruning and the grouping
//! of independent stages so that the executor can build them in parallel.

use crate::ast::{BaseImage, Dockerfile, Instruction};
use crate::error::{Located, ParseError, Position, SyntaxError};
use crate::expand::expand_word;
use crate::scope::{ArgSources, StepEnv};

/// What a `--from` value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRef {
    /// A stage of this file, by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

impl Dockerfile {
    /// Resolves a `COPY --from` or `--mount from=` value: a stage index, a
    /// stage name (case-insensitive) or else an image.
    pub fn stage_ref(&self, value: &str) -> Result<StageRef, SyntaxError> {
        if let Ok(i) = value.parse::<usize>() {
            return if i < self.stages.len() {
                Ok(StageRef::Stage(i))
            } else {
                Err(SyntaxError::UnknownStage(value.to_string()))
            };
        }
        let lower = value.to_ascii_lowercase();
        Ok(
            match self
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
            {
                Some(i) => StageRef::Stage(i),
                None => StageRef::Image(value.to_string()),
            },
        )
    }

    /// The stage named `name` (case-insensitive).
    pub fn stage_named(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// The stages needed to build `target` (a stage name; the last stage when
    /// `None`), grouped so that every stage depends only on stages of earlier
    /// groups: the stages of one group can be built in parallel.
    pub fn plan(&self, target: Option<&str>) -> Result<BuildPlan, ParseError> {
        let target = match target {
            Some(name) => self.stage_named(name).ok_or_else(|| ParseError {
                file: self.file_name.clone(),
                position: None,
                error: SyntaxError::UnknownStage(name.to_string()),
            })?,
            None => self.stages.len().saturating_sub(1),
        };
        let mut needed = vec![false; self.stages.len()];
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if std::mem::replace(&mut needed[i], true) {
                continue;
            }
            todo.extend(self.stages[i].depends_on.iter().copied());
        }
        // Depths are computed in index order of a topological sort; the graph
        // is acyclic (checked at parse time).
        let mut depth: Vec<Option<usize>> = vec![None; self.stages.len()];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in topological_order(self, &needed) {
            let d = self.stages[i]
                .depends_on
                .iter()
                .filter_map(|j| depth[*j])
                .map(|d| d + 1)
                .max()
                .unwrap_or(0);
            depth[i] = Some(d);
            if groups.len() <= d {
                groups.resize(d + 1, Vec::new());
            }
            groups[d].push(i);
        }
        for g in &mut groups {
            g.sort_unstable();
        }
        Ok(BuildPlan { target, groups })
    }
}

/// The stages a build runs, in groups of independent stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The stage whose result is the image.
    pub target: usize,
    /// Groups in build order; the stages within a group do not depend on
    /// each other.
    pub groups: Vec<Vec<usize>>,
}

impl BuildPlan {
    /// Every stage to build, in an order where dependencies come first.
    pub fn stages(&self) -> impl Iterator<Item = usize> + '_ {
        self.groups.iter().flatten().copied()
    }
}

fn topological_order(df: &Dockerfile, needed: &[bool]) -> Vec<usize> {
    let mut order = Vec::new();
    let mut done = vec![false; df.stages.len()];
    fn visit(df: &Dockerfile, i: usize, done: &mut [bool], order: &mut Vec<usize>) {
        if std::mem::replace(&mut done[i], true) {
            return;
        }
        for &j in &df.stages[i].depends_on {
            visit(df, j, done, order);
        }
        order.push(i);
    }
    for (i, n) in needed.iter().enumerate() {
        if *n {
            visit(df, i, &mut done, &mut order);
        }
    }
    order
}

/// Fills each stage's `depends_on` and rejects unknown stage indexes and cycles.
pub(crate) fn resolve_dependencies(df: &mut Dockerfile) -> Result<(), Located> {
    let escape = df.directives.escape;
    let mut edges: Vec<Vec<(usize, Position)>> = Vec::with_capacity(df.stages.len());
    for stage in &df.stages {
        let mut deps = Vec::new();
        if let BaseImage::Stage(j) = stage.base {
            deps.push((j, stage.span.start));
        }
        let mut env = StepEnv::default();
        let sources = ArgSources {
            build_args: &df.build_args,
            meta_args: &df.meta_args,
        };
        for node in &stage.instructions {
            let at = node.span.start;
            let froms: Vec<&String> = match &node.instruction {
                Instruction::Copy(c) => c.from.iter().collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
                _ => Vec::new(),
            };
            for from in froms {
                let value =
                    expand_word(from, escape, &env).map_err(|e| Located::at(at, e.into()))?;
                match df.stage_ref(&value) {
                    Ok(StageRef::Stage(j)) => deps.push((j, at)),
                    Ok(StageRef::Image(_)) => {}
                    Err(e) => return Err(Located::at(at, e)),
                }
            }
            env.apply(&node.instruction, sources, escape)
                .map_err(|e| Located::at(at, e.into()))?;
        }
        edges.push(deps);
    }
    check_cycles(df, &edges)?;
    for (stage, deps) in df.stages.iter_mut().zip(&edges) {
        let mut ids: Vec<usize> = deps.iter().map(|(j, _)| *j).collect();
        ids.sort_unstable();
        ids.dedup();
        stage.depends_on = ids;
    }
    Ok(())
}

fn check_cycles(df: &Dockerfile, edges: &[Vec<(usize, Position)>]) -> Result<(), Located> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let label = |i: usize| df.stages[i].name.clone().unwrap_or_else(|| i.to_string());
    let mut marks = vec![Mark::New; df.stages.len()];
    for root in 0..df.stages.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (stage, next edge to look at).
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::Active;
        while let Some((i, next)) = stack.last().copied() {
            let Some(&(j, at)) = edges[i].get(next) else {
                marks[i] = Mark::Done;
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match marks[j] {
                Mark::Done => {}
                Mark::New => {
                    marks[j] = Mark::Active;
                    stack.push((j, 0));
                }
                Mark::Active => {
                    let start = stack.iter().position(|(s, _)| *s == j).unwrap_or(0);
                    let mut path: Vec<String> =
                        stack[start..].iter().map(|(s, _)| label(*s)).collect();
                    path.push(label(j));
                    return Err(Located::at(at, SyntaxError::StageCycle(path.join(" -> "))));
                }
            }
        }
    }
    Ok(())
}
