//! The eleven workflow tools: each a [`WorkflowSpec`] for the shared step protocol.

use super::workflow::{Workflow, WorkflowSpec};

const THINKDEEP: WorkflowSpec = WorkflowSpec {
    name: "thinkdeep",
    description: "Step-by-step deep reasoning on a hard problem (architecture, trade-offs, a stubborn question), ending with an expert model's independent analysis of your findings.",
    system: "You are a principal engineer giving a second, independent analysis. Challenge assumptions, find gaps and edge cases, weigh alternatives, and say what you would do and why.",
    guidance: "Question your assumptions and look for evidence that contradicts your current view\nConsider at least one alternative approach and its trade-offs\nCheck edge cases, failure modes and operational costs",
    expert_task: "Give an independent analysis: what holds, what does not, what was missed, and a recommendation.",
};

const DEBUG: WorkflowSpec = WorkflowSpec {
    name: "debug",
    description: "Systematic debugging: investigate step by step (symptoms, code paths, hypotheses with evidence), then an expert model validates the root cause and the fix.",
    system: "You are an expert debugger. From the evidence gathered, identify the most likely root cause, explain the mechanism precisely (file and line), propose the minimal fix, and say how to verify it. Rank alternatives if the evidence is not conclusive.",
    guidance: "Trace the failing code path from the symptom to where state first goes wrong\nTest your hypothesis against the evidence: logs, inputs, recent changes\nRule out at least one competing explanation",
    expert_task: "Identify the root cause, the minimal fix, and how to verify it.",
};

const CODEREVIEW: WorkflowSpec = WorkflowSpec {
    name: "codereview",
    description: "Structured code review: walk the code step by step (correctness, security, performance, maintainability), recording issues with severity, then an expert model's review.",
    system: "You are a meticulous senior reviewer. Report concrete issues ordered by severity (critical, high, medium, low) with file and line, why each matters, and the fix. Note what is done well only briefly.",
    guidance: "Read the changed or named code paths end to end, including error paths\nCheck correctness, security, performance and maintainability in turn\nRecord each problem in issues_found with its severity",
    expert_task: "Review the code: issues by severity with locations and fixes, then an overall assessment.",
};

const PRECOMMIT: WorkflowSpec = WorkflowSpec {
    name: "precommit",
    description: "Pre-commit validation of pending changes: inspect the diff step by step for bugs, regressions and missing tests, then an expert model's verdict.",
    system: "You validate changes before they are committed. Find bugs, regressions, incomplete changes, security problems and missing tests in the diff; give a clear verdict: ready, or what must change first.",
    guidance: "Look at the full diff (staged and unstaged) and every file it touches\nCheck that the change does what was intended and nothing else\nLook for missing tests, docs and error handling",
    expert_task: "Give a verdict on the change (ready or not) and the issues that block it, by severity.",
};

const SECAUDIT: WorkflowSpec = WorkflowSpec {
    name: "secaudit",
    description: "Security audit: examine attack surface, auth, input handling, secrets and dependencies step by step (OWASP-minded), then an expert model's findings and remediations.",
    system: "You are an application security auditor. Report vulnerabilities by severity with the exploit scenario, location and remediation; consider OWASP Top 10, secrets handling, authn/authz, injection, and dependency risk.",
    guidance: "Map entry points, trust boundaries and where untrusted input flows\nCheck authentication, authorisation and secret handling\nReview input validation, injection risks and dependencies",
    expert_task: "List the vulnerabilities by severity with exploit scenario, location and remediation.",
};

const ANALYZE: WorkflowSpec = WorkflowSpec {
    name: "analyze",
    description: "Codebase analysis: architecture, patterns, dependencies, scalability and technical debt, investigated step by step, then an expert model's assessment.",
    system: "You are a software architect assessing a codebase. Describe its structure and key patterns, then the strategic risks and opportunities (coupling, scalability, debt), with prioritised recommendations.",
    guidance: "Identify the main components, their responsibilities and dependencies\nFind the patterns (and anti-patterns) the code actually uses\nNote scalability, maintainability and technical-debt hot spots",
    expert_task: "Assess the architecture and give prioritised recommendations.",
};

const REFACTOR: WorkflowSpec = WorkflowSpec {
    name: "refactor",
    description: "Refactoring analysis: find code smells, decomposition and modernisation opportunities step by step, then an expert model's prioritised refactoring plan.",
    system: "You plan refactorings. For each opportunity give the location, the problem, the concrete change and its risk; order them by value for effort, and keep behaviour unchanged.",
    guidance: "Find large or tangled units, duplication and unclear names\nCheck how callers depend on the code you would change\nNote tests that protect the behaviour (or their absence)",
    expert_task: "Give a prioritised refactoring plan with concrete steps and risks.",
};

const TRACER: WorkflowSpec = WorkflowSpec {
    name: "tracer",
    description: "Trace execution flow or dependencies of a function, type or module step by step, then an expert model's map of calls, data flow and side effects.",
    system: "You explain how code executes. Map the call chain or dependency graph precisely (file and line), the data flowing through it, branches and side effects.",
    guidance: "Follow the calls from the entry point, noting each file and line\nNote branches, error paths and side effects\nList what depends on the traced code, and what it depends on",
    expert_task: "Map the execution flow (or dependencies) with locations, data flow and side effects.",
};

const TESTGEN: WorkflowSpec = WorkflowSpec {
    name: "testgen",
    description: "Test generation: study the code's behaviour, edge cases and existing test style step by step, then an expert model writes the tests.",
    system: "You write tests in the project's existing framework and style. Cover the main behaviour, edge cases and failure modes; make each test independent and named for what it checks.",
    guidance: "Read the code under test and the existing tests' framework and conventions\nList behaviours, boundaries and failure modes worth testing\nFind what is hard to test (time, I/O, randomness) and how the project handles it",
    expert_task: "Write the tests, ready to add to the project, with a note on what each covers.",
};

const DOCGEN: WorkflowSpec = WorkflowSpec {
    name: "docgen",
    description: "Documentation generation: study the code's purpose, API and behaviour step by step, then an expert model writes the documentation.",
    system: "You write documentation that teaches: what a unit is for, how to use it, parameters, errors, complexity where it matters, and an example. Match the project's doc style.",
    guidance: "Read the code and how callers use it\nNote parameters, return values, errors and non-obvious behaviour\nCheck the project's existing documentation style",
    expert_task: "Write the documentation, ready to insert, in the project's style.",
};

const PLANNER: WorkflowSpec = WorkflowSpec {
    name: "planner",
    description: "Plan a complex task step by step (revising and branching as you go), then an expert model reviews the plan for gaps and order.",
    system: "You review plans. Check the order of steps, dependencies, missing steps, risks and how each step will be verified; return the improved plan.",
    guidance: "Break the task into steps small enough to verify\nOrder them by dependency and risk\nSay how each step will be checked",
    expert_task: "Review the plan and return an improved, ordered plan with risks and checks.",
};

const SPECS: [&WorkflowSpec; 11] = [
    &THINKDEEP,
    &PLANNER,
    &CODEREVIEW,
    &PRECOMMIT,
    &DEBUG,
    &SECAUDIT,
    &DOCGEN,
    &ANALYZE,
    &REFACTOR,
    &TRACER,
    &TESTGEN,
];

/// Every workflow tool.
pub(crate) fn all() -> Vec<Workflow> {
    SPECS.into_iter().map(Workflow).collect()
}
