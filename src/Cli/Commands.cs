using IoMux.Conformance;

namespace IoMux.Cli;

/// <summary>The two jobs of the iomux command.</summary>
internal static class Commands
{
    /// <summary>Prints the backend table. Returns 0, or 2 when no backend can be used at all.</summary>
    public static int Backends(TextWriter output)
    {
        BackendSelection? chosen = null;
        string? selectionError = null;
        try
        {
            chosen = BackendSelector.Default.Select();
        }
        catch (BackendUnavailableException e)
        {
            selectionError = e.Message;
        }
        using var chosenBackend = chosen?.Backend;

        output.WriteLine($"IoMux backends on {System.Runtime.InteropServices.RuntimeInformation.OSDescription.Trim()} ({System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}):");
        var rows = new List<string[]> { new[] { "backend", "available", "chosen", "edge", "oneshot", "read hangup", "timeout", "max fd", "notes" } };
        foreach (var provider in ConformanceRunner.Targets)
        {
            var variant = !BackendCatalog.All.Contains(provider);
            var reason = provider.UnsupportedReason();
            if (reason is not null)
            {
                rows.Add([provider.Name, "no", "", "", "", "", "", "", reason]);
                continue;
            }
            try
            {
                using var backend = provider.Create();
                var caps = backend.Capabilities;
                rows.Add([
                    provider.Name, "yes", chosen?.Provider == provider ? "*" : "",
                    caps.NativeEdge ? "native" : "emulated",
                    caps.NativeOneshot ? "native" : "emulated",
                    caps.NativeReadHangup ? "native" : "derived",
                    FormatResolution(caps.TimeoutResolution),
                    caps.MaxDescriptor == int.MaxValue ? "rlimit" : caps.MaxDescriptor.ToString(),
                    ConformanceRunner.Models.Contains(provider) ? $"model, not native: {provider.Description}"
                        : variant ? $"test variant: {provider.Description}" : provider.Description,
                ]);
            }
            catch (Exception e)
            {
                rows.Add([provider.Name, "no", "", "", "", "", "", "", $"failed to initialise: {e.Message}"]);
            }
        }
        WriteTable(output, rows);
        if (chosen is not null)
        {
            var forced = chosen.Forced ? $" (forced by {BackendSelector.EnvironmentVariable})" : "";
            output.WriteLine($"chosen: {chosen.Provider.Name}{forced}");
        }
        else
        {
            output.WriteLine($"no backend could be chosen: {selectionError}");
        }
        output.WriteLine("Rows named *-model run a backend over a model of another OS's system calls: evidence about IoMux's logic, not a native verification.");
        return chosen is null ? 2 : 0;
    }

    /// <summary>Runs the scenarios and prints a scenario × backend table. Returns 1 on any failure.</summary>
    public static int Check(TextWriter output, string? backendName, string? scenarioId)
    {
        var targets = ConformanceRunner.Targets.ToList();
        if (backendName is not null)
        {
            targets = targets.Where(t => string.Equals(t.Name, backendName, StringComparison.OrdinalIgnoreCase)).ToList();
            if (targets.Count == 0)
            {
                output.WriteLine($"unknown backend '{backendName}'; known: {string.Join(", ", ConformanceRunner.Targets.Select(t => t.Name))}");
                return 2;
            }
        }
        var scenarios = ScenarioCatalog.All.Where(s => scenarioId is null || string.Equals(s.Id, scenarioId, StringComparison.OrdinalIgnoreCase)).ToList();
        if (scenarios.Count == 0)
        {
            output.WriteLine($"unknown scenario '{scenarioId}'");
            return 2;
        }

        output.WriteLine($"Conformance check: {scenarios.Count} scenarios x {targets.Count} backends (docs/SEMANTICS.md)");
        var rows = new List<string[]> { new[] { "scenario" }.Concat(targets.Select(t => t.Name)).Append("what happens").ToArray() };
        var notes = new List<string>();
        int passed = 0, failed = 0, skipped = 0;
        foreach (var scenario in scenarios)
        {
            var row = new List<string> { scenario.Id };
            foreach (var target in targets)
            {
                var result = ConformanceRunner.Run(scenario, target);
                switch (result.Verdict)
                {
                    case Verdict.Pass: passed++; row.Add("pass"); break;
                    case Verdict.Fail: failed++; row.Add("FAIL"); notes.Add($"FAIL {scenario.Id} on {target.Name}: {result.Message}"); break;
                    default: skipped++; row.Add("skip"); notes.Add($"skip {scenario.Id} on {target.Name}: {result.Message}"); break;
                }
            }
            row.Add(scenario.Title);
            rows.Add(row.ToArray());
        }
        WriteTable(output, rows);
        foreach (var note in notes)
            output.WriteLine(note);
        output.WriteLine($"check: {passed} passed, {failed} failed, {skipped} skipped");
        return failed > 0 ? 1 : 0;
    }

    private static string FormatResolution(TimeSpan resolution) =>
        resolution >= TimeSpan.FromMilliseconds(1) ? $"{resolution.TotalMilliseconds:0.###} ms"
        : resolution >= TimeSpan.FromTicks(10) ? $"{resolution.TotalMicroseconds:0.###} µs"
        : "ns";

    private static void WriteTable(TextWriter output, List<string[]> rows)
    {
        int columns = rows.Max(r => r.Length);
        var widths = Enumerable.Range(0, columns).Select(c => rows.Max(r => c < r.Length ? r[c].Length : 0)).ToArray();
        foreach (var row in rows)
            output.WriteLine(string.Join("  ", row.Select((cell, c) => c == row.Length - 1 ? cell : cell.PadRight(widths[c]))).TrimEnd());
    }
}
