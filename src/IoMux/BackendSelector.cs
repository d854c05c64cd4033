using IoMux.Interop;

namespace IoMux;

/// <summary>The outcome of a selection: the backend made, the provider chosen, and why others were passed over.</summary>
/// <param name="Backend">The created backend; the caller owns it.</param>
/// <param name="Provider">Which provider made it.</param>
/// <param name="Forced">True when <c>IOMUX_BACKEND</c> chose it.</param>
/// <param name="Skipped">Providers tried or passed over before it, with the reason.</param>
internal sealed record BackendSelection(PollerBackend Backend, BackendProvider Provider, bool Forced, IReadOnlyList<(BackendProvider Provider, string Reason)> Skipped);

/// <summary>
/// Picks a backend at run time, libevent-style: walk the providers in order of preference, pass over those
/// this OS cannot run, and fall through to the next when one fails to initialise. The environment variable
/// <c>IOMUX_BACKEND</c> forces one by name; it is ignored in setuid/setgid processes, where the environment
/// belongs to a less privileged user. Internal: users reach it through <see cref="PollerFactory"/>, which hands out
/// pollers, never backends (docs/API-REVIEW.md, "Backends").
/// </summary>
internal sealed class BackendSelector
{
    /// <summary>The environment variable that forces a backend by name.</summary>
    public const string EnvironmentVariable = "IOMUX_BACKEND";

    private readonly IReadOnlyList<BackendProvider> _preference;
    private readonly IReadOnlyList<BackendProvider> _namedExtras;
    private readonly Func<string, string?> _environment;
    private readonly bool _ignoreEnvironment;

    /// <summary>A selector over <paramref name="preference"/> (best first), reading <c>IOMUX_BACKEND</c> from
    /// <paramref name="environment"/> (null: the process's; tests inject it); <paramref name="ignoreEnvironment"/> null:
    /// true for setuid processes. <paramref name="namedExtras"/> can be forced by name but are never chosen automatically.</summary>
    internal BackendSelector(IReadOnlyList<BackendProvider> preference, IReadOnlyList<BackendProvider>? namedExtras = null,
        Func<string, string?>? environment = null, bool? ignoreEnvironment = null)
    {
        _preference = preference;
        _namedExtras = namedExtras ?? [];
        _environment = environment ?? Environment.GetEnvironmentVariable;
        _ignoreEnvironment = ignoreEnvironment ?? Platform.IsSetuid;
    }

    /// <summary>The selector IoMux uses by default: this build's backends, the real environment.</summary>
    public static BackendSelector Default { get; } = new(BackendCatalog.All, BackendCatalog.TestVariants);

    /// <summary>The backend name forced through the environment, or null (also null when ignored).</summary>
    public string? ForcedName
    {
        get
        {
            if (_ignoreEnvironment)
                return null;
            var value = _environment(EnvironmentVariable);
            return string.IsNullOrWhiteSpace(value) ? null : value.Trim();
        }
    }

    /// <summary>Creates the forced backend, or the best one that initialises.</summary>
    /// <exception cref="BackendUnavailableException">The forced name is unknown or cannot run here, or no backend initialised.</exception>
    /// <exception cref="PlatformNotSupportedException">Windows (<see cref="PollerFactory.IsSupported"/> is false).</exception>
    public BackendSelection Select()
    {
        PlatformSupport.ThrowIfUnsupported("Backend selection");
        var forced = ForcedName;
        return forced is null ? SelectBest() : SelectNamed(forced, fromEnvironment: true);
    }

    /// <summary>Creates the backend called <paramref name="name"/>.</summary>
    /// <exception cref="BackendUnavailableException">Unknown or unavailable here.</exception>
    /// <exception cref="PlatformNotSupportedException">Windows (<see cref="PollerFactory.IsSupported"/> is false).</exception>
    public BackendSelection SelectNamed(string name, bool fromEnvironment = false)
    {
        PlatformSupport.ThrowIfUnsupported("Backend selection");
        var source = fromEnvironment ? $"{EnvironmentVariable}={name}" : $"backend '{name}'";
        var provider = _preference.Concat(_namedExtras).FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
            ?? throw new BackendUnavailableException($"Unknown {source}. Available here: {AvailableNames()}.");
        if (provider.UnsupportedReason() is { } reason)
            throw new BackendUnavailableException($"{source} cannot run here: {reason}. Available here: {AvailableNames()}.");
        try
        {
            return new BackendSelection(provider.Create(), provider, fromEnvironment, []);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new BackendUnavailableException($"{source} failed to initialise: {e.Message}. Available here: {AvailableNames()}.", e);
        }
    }

    private BackendSelection SelectBest()
    {
        var skipped = new List<(BackendProvider, string)>();
        Exception? last = null;
        foreach (var provider in _preference)
        {
            if (provider.UnsupportedReason() is { } reason)
            {
                skipped.Add((provider, reason));
                continue;
            }
            try
            {
                return new BackendSelection(provider.Create(), provider, false, skipped);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Fall through, as libevent does when a method's init fails (e.g. EMFILE, seccomp, ENOSYS).
                skipped.Add((provider, $"failed to initialise: {e.Message}"));
                last = e;
            }
        }
        throw new BackendUnavailableException(
            "No backend could be initialised: " + string.Join("; ", skipped.Select(s => $"{s.Item1.Name}: {s.Item2}")), last);
    }

    /// <summary>Names of the providers this OS can run, comma-separated.</summary>
    public string AvailableNames() =>
        string.Join(", ", _preference.Concat(_namedExtras).Where(p => p.IsSupported).Select(p => p.Name));
}
