using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;
using Microsoft.Extensions.Logging;
using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>An expected failure of a command (address in use, a directory that cannot be served): one line for
/// stderr that names the cause, and the exit code.</summary>
internal sealed class CommandFailure(string message, int exitCode = UnixCommand.RuntimeError, Exception? cause = null)
    : Exception(message, cause)
{
    /// <summary><see cref="UnixCommand.RuntimeError"/> or <see cref="UnixCommand.UsageError"/>.</summary>
    public int ExitCode { get; } = exitCode;
}

/// <summary>What makes <c>iomux</c> and <c>iomux-socket-proxyd</c> answer like Unix tools: the program's own name
/// in --help, every expected failure as one line <c>PROGRAM: cause (ERRNO)</c> on stderr, exit codes 0 (success),
/// 1 (runtime failure) and 2 (usage), and no stack trace unless --verbose. The values are checked while parsing
/// (System.CommandLine custom parsers and validators), so a bad value is a usage error before anything starts.</summary>
internal static class UnixCommand
{
    /// <summary>Exit code: the command did its job.</summary>
    public const int Success = 0;

    /// <summary>Exit code: the command could not do its job (address in use, permission denied...).</summary>
    public const int RuntimeError = 1;

    /// <summary>Exit code: the command line (or IOMUX_BACKEND) asks for something that cannot be: a bad option
    /// value, an unknown option, an unknown backend, a directory that is not one.</summary>
    public const int UsageError = 2;

    private const string VerboseName = "--verbose";

    /// <summary>The root command, named <paramref name="programName"/> whatever the executable or the dll is
    /// called (RootCommand takes the name from argv[0]: "IoMux.Cli" for the installed iomux), with --help,
    /// --version and --verbose.</summary>
    public static Command Root(string programName, string description) => new(programName, description)
    {
        new HelpOption(),
        new VersionOption(),
        new Option<bool>(VerboseName)
        {
            Description = "On an error, print the exception and its stack trace after the one-line message.",
            Recursive = true,
        },
    };

    /// <summary>Parses <paramref name="args"/> and runs the command: a parse error is one line on
    /// <paramref name="error"/> (stderr by default) and <see cref="UsageError"/>; an exception is one line (with the stack trace after
    /// it under --verbose) and its exit code.</summary>
    public static int Run(Command root, IReadOnlyList<string> args, TextWriter? error = null) =>
        Guard(root.Name, args, log =>
        {
            var result = Parse(root, args);
            if (result.Action is ParseErrorAction)
            {
                // All of them on one line: System.CommandLine's own report is one error a line and the whole help.
                var errors = string.Join("; ", result.Errors.Select(e => OneLine(e.Message).TrimEnd('.')));
                log.LogError("{Errors} (see {Command} --help)", errors, CommandPath(result.CommandResult));
                return UsageError;
            }
            return result.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, Error = error ?? Console.Error });
        }, error);

    /// <summary>An option nobody knows, reported as System.CommandLine's parse error for it reads (see <see cref="Run"/>),
    /// with <see cref="UsageError"/>.</summary>
    /// <summary>The same from inside a command's action, on stderr as <see cref="Run"/> reports a parse error.</summary>
    public static int ReportUnrecognized(ParseResult result, string option)
    {
        var path = CommandPath(result.CommandResult);
        Console.Error.WriteLine($"{path.Split(' ')[0]}: Unrecognized command or argument '{option}' (see {path} --help)");
        return UsageError;
    }

    public static int ReportUnrecognized(StderrLogger log, string command, string option)
    {
        log.LogError("Unrecognized command or argument '{Option}' (see {Command} --help)", option, command);
        return UsageError;
    }

    /// <summary>How both commands parse: without response files. System.CommandLine would replace an argument
    /// <c>@word</c> by the contents of the file <c>word</c> in the working directory (<c>/</c> under systemd), so
    /// that <c>iomux-socket-proxyd @name</c>, systemd-socket-proxyd's abstract socket target, read its target from
    /// a file, and <c>iomux serve @dir</c> served whatever a file named <c>dir</c> held (issue 21).</summary>
    public static ParserConfiguration Parsing { get; } = new() { ResponseFileTokenReplacer = null };

    /// <summary>Parses <paramref name="args"/> for <paramref name="root"/> with <see cref="Parsing"/>.</summary>
    public static ParseResult Parse(Command root, IReadOnlyList<string> args) => root.Parse(args, Parsing);

    /// <summary>Runs <paramref name="body"/> (given the error logger) and returns its exit code; an exception is
    /// one line on <paramref name="error"/> (stderr by default), with the stack trace after it under --verbose,
    /// and the exit code <see cref="Describe"/> gives it.</summary>
    public static int Guard(string programName, IReadOnlyList<string> args, Func<StderrLogger, int> body, TextWriter? error = null)
    {
        // Through the stderr logger: under the journal the line carries its priority (<3>), as the proxy's other
        // errors and systemd's own tools' do, so that `journalctl -p err` finds it.
        var log = new StderrLogger(programName, LogLevel.Error, error);
        try
        {
            return body(log);
        }
        catch (Exception e)
        {
            var (message, code) = Describe(e);
            log.LogError("{Message}", OneLine(message));
            if (args.Contains(VerboseName)) // read from the arguments: the failure may have been in parsing them
                (error ?? Console.Error).WriteLine(e);
            return code;
        }
    }

    /// <summary>True when <paramref name="text"/> is an integer in [<paramref name="minimum"/>,
    /// <paramref name="maximum"/>], as <see cref="BoundedInt"/> takes it.</summary>
    public static bool TryParseBounded(string text, int minimum, int maximum, out int value)
    {
        bool ok = long.TryParse(text, IntegerStyle, CultureInfo.InvariantCulture, out long parsed) && parsed >= minimum && parsed <= maximum;
        value = ok ? (int)parsed : 0;
        return ok;
    }

    /// <summary>The cause an errno names, as the one-line messages end: "address in use (EADDRINUSE)".</summary>
    public static string Reason(int errno)
    {
        // The few a command meets most, in the words the docs promise; the C library's strerror for the rest
        // (its wording differs between libcs, the name in parentheses does not).
        string words = errno == Errno.EADDRINUSE ? "address in use"
            : errno == Errno.EADDRNOTAVAIL ? "address not available on this host"
            : errno == Errno.EACCES ? "permission denied"
            : errno == Errno.ENOENT ? "no such file or directory"
            : errno == Errno.ENOTDIR ? "not a directory"
            : errno == Errno.EROFS ? "read-only file system"
            : LowerFirst(Errno.Describe(errno));
        return $"{words} ({Errno.Name(errno)})";
    }

    /// <summary>An int option that refuses values outside [<paramref name="minimum"/>, <paramref name="maximum"/>]
    /// while parsing, naming the option, the value and the range: "--port 99999: not a port (1-65535)". The option
    /// holds the text (see <see cref="CheckedWith"/> for why); <see cref="GetInt"/> reads the number.</summary>
    public static Option<string> BoundedInt(string name, string alias, string what, int minimum, int maximum, int defaultValue)
    {
        var option = alias.Length == 0 ? new Option<string>(name) : new Option<string>(name, alias);
        option.DefaultValueFactory = _ => defaultValue.ToString(CultureInfo.InvariantCulture);
        option.CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
            if (TryParseBounded(text, minimum, maximum, out _))
                return text;
            string range = maximum == int.MaxValue ? $"at least {minimum}" : $"{minimum}-{maximum}";
            result.AddError($"{name} {text}: not {what} ({range})");
            return null;
        };
        return option;
    }

    /// <summary>The number a <see cref="BoundedInt"/> option holds (its default when absent).</summary>
    public static int GetInt(ParseResult result, Option<string> option) =>
        int.Parse(result.GetValue(option)!, IntegerStyle, CultureInfo.InvariantCulture);

    private const NumberStyles IntegerStyle = NumberStyles.AllowLeadingSign;

    /// <summary>Sets <paramref name="option"/>, which keeps its value as text, to be checked while parsing by
    /// <paramref name="check"/>, whose <see cref="FormatException"/> becomes the parse error "NAME: message"; the
    /// action converts the text with the same parser. Why not an <c>Option&lt;T&gt;</c>: one over a value type (int,
    /// TimeSpan, an enum) is JIT-compiled at start, because ReadyToRun cannot precompile a generic instantiation
    /// over types from another version bubble (System.CommandLine's Option&lt;T&gt; over CoreLib's int), and under
    /// socket activation start-up is time the first client waits for (docs/BENCHMARKS.md). Reference-type options
    /// share the precompiled canonical code.</summary>
    public static Option<string> CheckedWith(this Option<string> option, Action<string> check)
    {
        option.CustomParser = result => Parse(result, $"{option.Name}: ", text =>
        {
            check(text);
            return text;
        });
        return option;
    }

    /// <summary>Sets <paramref name="option"/> to parse its value with <paramref name="parse"/>, whose
    /// <see cref="FormatException"/> becomes the parse error "NAME: message".</summary>
    public static Option<T> ParsedWith<T>(this Option<T> option, Func<string, T> parse)
    {
        option.CustomParser = result => Parse(result, $"{option.Name}: ", parse);
        return option;
    }

    /// <summary>Sets <paramref name="argument"/> to parse its value with <paramref name="parse"/>, whose
    /// <see cref="FormatException"/> becomes the parse error.</summary>
    public static Argument<T> ParsedWith<T>(this Argument<T> argument, Func<string, T> parse)
    {
        argument.CustomParser = result => Parse(result, "", parse);
        return argument;
    }

    private static T Parse<T>(ArgumentResult result, string prefix, Func<string, T> parse)
    {
        try
        {
            return parse(result.Tokens.Count > 0 ? result.Tokens[^1].Value : "");
        }
        catch (FormatException e)
        {
            result.AddError(prefix + e.Message);
            return default!;
        }
    }

    private static (string Message, int ExitCode) Describe(Exception e) => e switch
    {
        CommandFailure failure => (failure.Message, failure.ExitCode),
        // An unknown or unavailable IOMUX_BACKEND: the environment asks for what cannot be (as `iomux backends`).
        BackendUnavailableException => (e.Message, UsageError),
        PosixException posix => (posix.Message, RuntimeError),
        _ => ($"{e.Message} ({e.GetType().Name}; --verbose shows where)", RuntimeError),
    };

    /// <summary>"iomux serve": the command the error is about, for the --help to read.</summary>
    private static string CommandPath(CommandResult command)
    {
        var names = new Stack<string>();
        for (SymbolResult? at = command; at is not null; at = at.Parent)
            if (at is CommandResult { Command.Name: var name })
                names.Push(name);
        return string.Join(' ', names);
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    private static string LowerFirst(string text) =>
        text.Length > 1 && char.IsUpper(text[0]) && !char.IsUpper(text[1]) ? char.ToLowerInvariant(text[0]) + text[1..] : text;
}
