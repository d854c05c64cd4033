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
                    variant ? $"test variant: {provider.Description}" : provider.Description,
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
        output.WriteLine("kqueue and event ports also run in the test suite on Linux over models of those kernels, one per OS (tests/IoMux.Models): evidence about IoMux's logic, not a native verification.");
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

        // A backend this OS cannot run is one line, not one skip per scenario.
        var runnable = new List<BackendProvider>();
        var notHere = new List<string>();
        foreach (var target in targets)
        {
            if (target.UnsupportedReason() is { } reason)
                notHere.Add($"{target.Name} cannot run here: {reason}");
            else
                runnable.Add(target);
        }
        output.WriteLine($"Conformance check: {scenarios.Count} scenarios x {runnable.Count} backends (docs/SEMANTICS.md)");
        foreach (var line in notHere)
            output.WriteLine($"skip {line} ({scenarios.Count} scenarios)");
        if (runnable.Count == 0)
        {
            output.WriteLine("check: no backend can run here");
            return 2;
        }

        // Rows are printed as they finish: the widths come from the names, not from the results.
        int idWidth = Math.Max("scenario".Length, scenarios.Max(s => s.Id.Length));
        var widths = runnable.Select(t => Math.Max(t.Name.Length, 4)).ToArray();
        output.WriteLine(string.Join("  ", new[] { "scenario".PadRight(idWidth) }.Concat(runnable.Select((t, i) => t.Name.PadRight(widths[i]))).Append("what happens")));
        var notes = new List<string>();
        int passed = 0, failed = 0, skipped = 0;
        foreach (var scenario in scenarios)
        {
            var cells = new List<string> { scenario.Id.PadRight(idWidth) };
            for (int i = 0; i < runnable.Count; i++)
            {
                var result = ConformanceRunner.Run(scenario, runnable[i]);
                string cell;
                switch (result.Verdict)
                {
                    case Verdict.Pass: passed++; cell = "pass"; break;
                    case Verdict.Fail: failed++; cell = "FAIL"; notes.Add($"FAIL {scenario.Id} on {runnable[i].Name}: {result.Message}"); break;
                    default: skipped++; cell = "skip"; notes.Add($"skip {scenario.Id} on {runnable[i].Name}: {result.Message}"); break;
                }
                cells.Add(cell.PadRight(widths[i]));
            }
            cells.Add(scenario.Title);
            output.WriteLine(string.Join("  ", cells));
            output.Flush();
        }
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
