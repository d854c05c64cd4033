namespace IoMux.SocketProxy;

/// <summary>Rewrites iomux-socket-proxyd's arguments as systemd-socket-proxyd's getopt_long("c:h") reads them, into
/// the one form both of the proxy's readers take (ProxyCommand.TryReadCommon and System.CommandLine), so that a
/// unit's ExecStart= line means the same to both programs (issue 21):
/// <list type="bullet">
/// <item>a long option may be abbreviated to any unambiguous prefix (<c>--connections=5</c>, <c>--exit=5min</c>);
/// a prefix of one of systemd's own options means that option even where an IoMux extension shares it
/// (<c>--c</c> is --connections-max, not --copy; <c>--ver</c> is --version, not --verbose), so that no abbreviation
/// systemd accepts changes meaning here;</item>
/// <item>a long option's value is <c>--name=value</c> or the next argument, whatever it starts with;
/// <c>-c</c>'s is <c>-cVALUE</c> or the next argument;</item>
/// <item>options and the target may come in any order (GNU getopt permutes), <c>--</c> ends the options;</item>
/// <item>of a single-valued option given more than once, the last value counts.</item>
/// </list>
/// Every option comes out as <c>--full-name=value</c> (or <c>--flag</c>), then the target; what this cannot read
/// (an unknown or ambiguous option, a missing value) is passed on as it was, for System.CommandLine to name.</summary>
internal static class Getopt
{
    /// <summary>systemd-socket-proxyd's long options, which win an ambiguous prefix.</summary>
    private static readonly string[] SystemdOptions = ["connections-max", "exit-idle-time", "help", "version"];

    /// <summary>IoMux's extensions.</summary>
    private static readonly string[] ExtensionOptions = ["listen", "drain-time", "connect-timeout", "copy", "at-limit", "verbose"];

    /// <summary>The options that take no value.</summary>
    private static bool IsFlag(string name) => name is "help" or "version" or "verbose";

    /// <summary>The options that may be given more than once, each value counting.</summary>
    private static bool IsRepeatable(string name) => name is "listen";

    /// <summary>The arguments in the canonical form described above.</summary>
    public static string[] Canonical(IReadOnlyList<string> args) => Read(args, out _);

    /// <summary>The first option neither program knows (<c>--bogus</c>, <c>-x</c>) when no target is given, else null.
    /// getopt_long reports such an option before the missing target is noticed; System.CommandLine would take it
    /// for the target instead (its unmatched tokens fill an empty argument), so that <c>--bogus</c> alone got as far
    /// as "No listening socket was passed". The caller reports it, as System.CommandLine words it with a target.</summary>
    public static string? UnrecognizedWithoutTarget(IReadOnlyList<string> args)
    {
        Read(args, out var unrecognized);
        return unrecognized;
    }

    private static string[] Read(IReadOnlyList<string> args, out string? unrecognizedWithoutTarget)
    {
        string? unrecognized = null;
        var options = new List<(string Name, string? Value)>();
        var passedOn = new List<string>(); // not understood: System.CommandLine reports it
        var operands = new List<string>();
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--")
            {
                for (i++; i < args.Count; i++)
                    operands.Add(args[i]);
                break;
            }
            if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                int equals = arg.IndexOf('=');
                string written = equals < 0 ? arg[2..] : arg[2..equals];
                string? name = LongName(written);
                if (name is null || (IsFlag(name) && equals >= 0))
                {
                    if (name is null)
                        unrecognized ??= arg;
                    passedOn.Add(arg);
                    continue;
                }
                if (IsFlag(name))
                    options.Add((name, null));
                else if (equals >= 0)
                    options.Add((name, arg[(equals + 1)..]));
                else if (i + 1 < args.Count)
                    options.Add((name, args[++i]));
                else
                    passedOn.Add(arg); // "--connections-max" with nothing after it
                continue;
            }
            if (arg == "-h")
                options.Add(("help", null));
            else if (arg == "-c" && i + 1 < args.Count)
                options.Add(("connections-max", args[++i]));
            else if (arg.Length > 2 && arg.StartsWith("-c", StringComparison.Ordinal))
                options.Add(("connections-max", arg[2..]));
            else if (arg.Length > 1 && arg[0] == '-')
            {
                // -?, bundles, unknown short options, a lone -c: System.CommandLine's to read.
                if (arg[1] is not ('?' or 'h' or 'c'))
                    unrecognized ??= arg;
                passedOn.Add(arg);
            }
            else
                operands.Add(arg); // "-" is an operand, as in getopt
        }
        unrecognizedWithoutTarget = operands.Count == 0 ? unrecognized : null;
        var result = new List<string>(args.Count);
        for (int i = 0; i < options.Count; i++)
        {
            var (name, value) = options[i];
            if (!IsRepeatable(name) && options.FindLastIndex(o => o.Name == name) != i)
                continue; // a later one wins
            result.Add(value is null ? "--" + name : $"--{name}={value}");
        }
        // What is passed on goes after the target, so that System.CommandLine names it rather than taking it for
        // the target; unless a target starts with '-' and needs "--" in front of it.
        bool dashed = operands.Exists(o => o.StartsWith('-'));
        if (dashed)
        {
            result.AddRange(passedOn);
            result.Add("--");
        }
        result.AddRange(operands);
        if (!dashed)
            result.AddRange(passedOn);
        return [.. result];
    }

    /// <summary>The long option <paramref name="written"/> names: itself, or the only one it abbreviates (systemd's
    /// first); null when none or several.</summary>
    private static string? LongName(string written)
    {
        if (written.Length == 0)
            return null;
        foreach (var names in new[] { SystemdOptions, ExtensionOptions })
            foreach (var name in names)
                if (name == written)
                    return name;
        foreach (var names in new[] { SystemdOptions, ExtensionOptions })
        {
            string? found = null;
            foreach (var name in names)
            {
                if (!name.StartsWith(written, StringComparison.Ordinal))
                    continue;
                if (found is not null)
                    return null; // ambiguous within the group
                found = name;
            }
            if (found is not null)
                return found;
        }
        return null;
    }
}
