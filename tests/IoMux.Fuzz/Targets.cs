using System.Net;
using System.Net.Sockets;
using System.Text;
using IoMux.Backends.EventPorts;
using IoMux.Backends.Kqueue;
using IoMux.Interop;
using IoMux.SocketProxy;
using IoMux.Web.Http;
using static IoMux.Backends.Kqueue.Kq;

namespace IoMux.Fuzz;

/// <summary>A fuzz input broke a property of its target. Under afl-fuzz any exception that leaves a target is a
/// crash; the corpus replay in IoMux.Tests fails with this message.</summary>
internal sealed class PropertyViolationException(string message) : Exception(message);

/// <summary>
/// The fuzz targets, shared by the SharpFuzz program (tests/IoMux.Fuzz/Program.cs, instrumented, under afl-fuzz)
/// and the corpus replay (tests/IoMux.Tests/FuzzCorpusTests.cs, which links these files in). This file is the
/// dispatch; each target is in a file of its own (HttpRequestTarget.cs, TimeSpanTarget.cs, ListenFdsTarget.cs,
/// BackendTargetTarget.cs, KeventTranslationTarget.cs and PortTranslationTarget.cs with their shared checks in
/// BackendTranslation.cs, ConnectionTarget.cs). Each target feeds
/// one input to one parser or translation and throws when a property breaks: an exception the code does not
/// document, a result that contradicts itself, a path outside the served root, an event nobody registered.
/// Allowed outcomes (the documented typed errors) return quietly.
/// </summary>
internal sealed partial class FuzzTargets : IDisposable
{
    /// <summary>The target names, as run.sh, the corpus folders and the dictionaries spell them.</summary>
    public static IReadOnlyList<string> Names { get; } =
        ["http-request", "timespan", "listen-fds", "backend-target", "kevent-translation", "port-translation", "http-connection"];

    private readonly Lazy<ServedTree> _tree = new(() => new ServedTree());
    private readonly Lazy<Descriptors> _descriptors = new(() => new Descriptors());
    private readonly Lazy<ConnectionTarget> _connection = new(() => new ConnectionTarget());

    /// <summary>Runs <paramref name="target"/> on <paramref name="input"/>.</summary>
    public void Run(string target, ReadOnlySpan<byte> input)
    {
        switch (target)
        {
            case "http-request": RequestView(input); break;
            case "timespan": TimeSpanText(input); break;
            case "listen-fds": ListenFds(input); break;
            case "backend-target": BackendTargetText(input); break;
            case "kevent-translation": KeventTranslation(input.ToArray()); break;
            case "port-translation": PortTranslation(input.ToArray()); break;
            case "http-connection": _connection.Value.Run(input); break;
            default: throw new ArgumentException($"unknown fuzz target '{target}'", nameof(target));
        }
    }

    public void Dispose()
    {
        if (_tree.IsValueCreated)
            _tree.Value.Dispose();
        if (_descriptors.IsValueCreated)
            _descriptors.Value.Dispose();
        if (_connection.IsValueCreated)
            _connection.Value.Dispose();
    }

    private static void Require(bool property, string what)
    {
        if (!property)
            throw new PropertyViolationException(what);
    }
}
